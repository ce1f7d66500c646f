#!/usr/bin/env bash
# Alternating A/B of two gateway builds on this machine (loopback only): for each of N pairs,
# each build gets a fresh data directory and a fresh server, then `loadtest ratio` and/or
# `loadtest checkin-storm`; one line per run is appended to $OUT (tab-separated:
# build, pair, kind, rate/s, no-op rate/s, rate ÷ no-op, p99 ms[, exactly-once]).
#
#   OLD_BIN=/path/old-gateway NEW_BIN=/path/new-gateway LT=/path/loadtest \
#     [OLD_ARGS="--config /old/tree/config/default.toml"] [NEW_ARGS=...] [ORDER=old|new] \
#     [OLD_ENV="REGENGINE__LOG__FILTER=warn,access=info"] [NEW_ENV=...] \
#     [KINDS="ratio storm"] \
#     [OUT=ab-results.tsv] bash loadtest/scripts/ab.sh N
#
# Quote medians, and the median of the per-pair ratios; run both ORDERs (the first of a pair
# tends to be a few per cent faster on a 2-core machine).
set -u
N=${1:-5}
: "${OLD_BIN:?}" "${NEW_BIN:?}" "${LT:?}"
OUT=${OUT:-ab-results.tsv}
PASSWORD=ab-password-12345

run_one() { # label binary args pair extra-env
  local label=$1 bin=$2 args=$3 pair=$4 extra=${5:-} kind data port spid
  for kind in ${KINDS:-ratio storm}; do
    data=$(mktemp -d)
    port=$((19000 + RANDOM % 900))
    # shellcheck disable=SC2086
    env REGENGINE__HTTP__BIND=127.0.0.1:$port REGENGINE__STORAGE__DATA_DIR="$data" \
      REGENGINE__AUTH__BOOTSTRAP_ADMIN_EMAIL=admin@loadtest.local \
      REGENGINE_BOOTSTRAP_ADMIN_PASSWORD=$PASSWORD REGENGINE__RATE_LIMIT__ENABLED=false \
      REGENGINE__LOG__FILTER=warn $extra "$bin" $args >"$data.log" 2>&1 &
    spid=$!
    for _ in $(seq 1 150); do
      curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
      sleep 0.2
    done
    if [ "$kind" = ratio ]; then
      LOADTEST_PASSWORD=$PASSWORD timeout 300 "$LT" ratio --base "http://127.0.0.1:$port" \
        -n 100000 -c 64 --quiet --report "$data.json" >/dev/null 2>&1
      python3 - "$data.json" "$label" "$pair" >>"$OUT" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("\t".join([sys.argv[2], sys.argv[3], "ratio", str(round(r["flash_sale"]["holds_per_sec"])),
    str(round(r["noop"]["replies_per_sec"])), str(round(r["holds_per_noop_ratio"], 3)),
    str(r["flash_sale"]["latency_ms"]["p99"])]))
PY
    else
      LOADTEST_PASSWORD=$PASSWORD timeout 300 "$LT" checkin-storm --base "http://127.0.0.1:$port" \
        -k 30000 -m 8 --report "$data.json" >/dev/null 2>&1
      python3 - "$data.json" "$label" "$pair" >>"$OUT" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["checkin_storm"]
print("\t".join([sys.argv[2], sys.argv[3], "storm", str(round(r["scans_per_sec"])),
    str(round(r["noop_frames_per_sec"])), str(round(r["ratio_scans_to_noop"], 3)),
    str(r["latency_ms"]["p99"]), str(r["exactly_once"])]))
PY
    fi
    kill "$spid"
    wait "$spid" 2>/dev/null
    rm -rf "$data" "$data.log" "$data.json"
  done
}

for pair in $(seq 1 "$N"); do
  if [ "${ORDER:-old}" = new ]; then
    run_one new "$NEW_BIN" "${NEW_ARGS:-}" "$pair" "${NEW_ENV:-}"
    run_one old "$OLD_BIN" "${OLD_ARGS:-}" "$pair" "${OLD_ENV:-}"
  else
    run_one old "$OLD_BIN" "${OLD_ARGS:-}" "$pair" "${OLD_ENV:-}"
    run_one new "$NEW_BIN" "${NEW_ARGS:-}" "$pair" "${NEW_ENV:-}"
  fi
done
