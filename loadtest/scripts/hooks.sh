#!/usr/bin/env bash
# A paid sale with an organizer webhook endpoint listening to everything, on this machine
# (loopback only): a fresh gateway, an organizer-wide endpoint (HOOKS=on) posting to the
# loadtest's own HTTP stub (it answers every POST 200), then `loadtest webhooks` (N paid
# registrations confirmed by signed Stripe webhooks, 30% redelivered). Each registration is
# then three organizer webhooks (registration.held, payment.succeeded, registration.confirmed).
# Prints the loadtest's summary (confirmations/s), then how the webhook backlog drained.
#
#   HOOKS=on|off GW=target/release/gateway LT=target/release/loadtest bash loadtest/scripts/hooks.sh [N]
#
# HOOKS=off registers no endpoint: the same sale, for a same-sitting comparison.
set -u
N=${1:-20000}
shift || true
HOOKS=${HOOKS:-on}
GW=${GW:-target/release/gateway}
LT=${LT:-target/release/loadtest}
PASSWORD=hooks-password-12345
port=$((18000 + RANDOM % 900))
stub=$((12000 + RANDOM % 900))
data=$(mktemp -d)
REGENGINE__HTTP__BIND=127.0.0.1:$port REGENGINE__STORAGE__DATA_DIR="$data" \
  REGENGINE__AUTH__BOOTSTRAP_ADMIN_EMAIL=admin@loadtest.local \
  REGENGINE_BOOTSTRAP_ADMIN_PASSWORD=$PASSWORD REGENGINE__RATE_LIMIT__ENABLED=false \
  REGENGINE__LOG__FILTER=warn REGENGINE__PAYMENTS__STRIPE__ENABLED=true \
  REGENGINE__PAYMENTS__STRIPE__API_BASE=http://127.0.0.1:$stub \
  REGENGINE__PAYMENTS__STRIPE__SECRET_KEY=sk_test_loadtest \
  REGENGINE__PAYMENTS__STRIPE__WEBHOOK_SECRETS='["whsec_loadtest"]' \
  REGENGINE__OUTBOX__DELIVERY=log REGENGINE__WEBHOOKS__ALLOW_PRIVATE_TARGETS=true \
  "$GW" >"$data.log" 2>&1 &
pid=$!
for _ in $(seq 1 150); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.2
done
if [ "$HOOKS" = on ]; then
  token=$(curl -s "http://127.0.0.1:$port/api/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"admin@loadtest.local\",\"password\":\"$PASSWORD\"}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
  curl -s "http://127.0.0.1:$port/api/v1/webhooks" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' \
    -d "{\"url\":\"http://127.0.0.1:$stub/hook\",\"description\":\"load test\"}" >/dev/null
fi
LOADTEST_PASSWORD=$PASSWORD timeout 900 "$LT" webhooks --base "http://127.0.0.1:$port" \
  --stripe-stub 127.0.0.1:$stub --secret whsec_loadtest -n "$N" --quiet \
  --report "$data.json" "$@" &
lt=$!
sent() {
  curl -s "http://127.0.0.1:$port/metrics" |
    awk '/^regengine_notify_attempts_total\{channel="webhook",result="sent"\}/ {print $2}' | cut -d. -f1
}
# The loadtest's stub is the receiver: wait for the storm, then for the drain while the
# loadtest process (and its stub) is still up.
wait "$lt"
echo "(the loadtest's stub stopped with it; webhooks still due are retried later)"
echo "webhooks ($HOOKS): $(sent) sent when the storm ended, of $((3 * N)) due"
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^notify_(attempts_total|backlog)\{channel="webhook"' | sed 's/^/  /'
kill "$pid"
wait "$pid" 2>/dev/null
rm -rf "$data" "$data.log" "$data.json"
