#!/usr/bin/env bash
# A sale with mail on, on this machine (loopback only): a real SMTP server (aiosmtpd, from the
# tests' Python environment), a fresh gateway sending to it, then `loadtest webhooks` (N paid
# registrations confirmed by signed Stripe webhooks, 30% redelivered), so N confirmation mails
# (HTML, text, the ticket's QR code as a PNG, the event's .ics) are due. Prints the loadtest's
# summary (confirmations/s), then how the mail backlog drained: mails sent during the storm,
# the rest's drain rate, and the count the SMTP server received.
#
#   MAIL=on|off SINK=node|python GW=target/release/gateway LT=target/release/loadtest \
#     bash loadtest/scripts/mail.sh [N]
#
# MAIL=off sends through the log transport instead (rendered, not sent): the same sale, for a
# same-sitting comparison of confirmations/s with and without SMTP. SINK picks the SMTP server:
# `node` (default; nodemailer's smtp-server from npm, loadtest/support/smtp_sink.js, installed
# into the target directory on first use) or `python` (the tests' aiosmtpd sink, which reads
# DATA a line at a time and is itself the limit of the drain on this machine). PIN=1 runs the
# SMTP server on the last core and the gateway on the others (`taskset`), as if the server were
# another host's: on two cores the two otherwise take the same CPUs turn about.
set -u
N=${1:-20000}
shift || true
MAIL=${MAIL:-on}
SINK=${SINK:-node}
PIN=${PIN:-0}
sink_pin=()
gw_pin=()
if [ "$PIN" = 1 ]; then
  last=$(($(nproc) - 1))
  sink_pin=(taskset -c "$last")
  gw_pin=(taskset -c "0-$((last - 1))")
fi
GW=${GW:-target/release/gateway}
LT=${LT:-target/release/loadtest}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
VENV="$TARGET/localstripe-venv"
bash "$ROOT/tests/support/install-python-tools.sh" "$VENV" >&2
PASSWORD=mail-password-12345
port=$((18000 + RANDOM % 900))
stub=$((12000 + RANDOM % 900))
data=$(mktemp -d)
maildir="$data.mail"
mkdir -p "$maildir"
if [ "$SINK" = node ]; then
  NODE_DIR="$TARGET/smtp-sink-node"
  if [ ! -d "$NODE_DIR/node_modules/smtp-server" ]; then
    mkdir -p "$NODE_DIR"
    cp "$ROOT/loadtest/support/package.json" "$NODE_DIR/"
    (cd "$NODE_DIR" && npm install --no-audit --no-fund --silent) >&2
  fi
  NODE_PATH="$NODE_DIR/node_modules" "${sink_pin[@]}" node "$ROOT/loadtest/support/smtp_sink.js" "$maildir" \
    >"$data.smtp" 2>&1 &
else
  "${sink_pin[@]}" "$VENV/bin/python" "$ROOT/tests/support/smtp_sink.py" "$maildir" >"$data.smtp" 2>&1 &
fi
sink=$!
for _ in $(seq 1 100); do
  grep -q '^listening on' "$data.smtp" && break
  sleep 0.1
done
smtp_port=$(sed -n 's/^listening on 127.0.0.1://p' "$data.smtp")
delivery=smtp
[ "$MAIL" = off ] && delivery=log
REGENGINE__HTTP__BIND=127.0.0.1:$port REGENGINE__STORAGE__DATA_DIR="$data" \
  REGENGINE__AUTH__BOOTSTRAP_ADMIN_EMAIL=admin@loadtest.local \
  REGENGINE_BOOTSTRAP_ADMIN_PASSWORD=$PASSWORD REGENGINE__RATE_LIMIT__ENABLED=false \
  REGENGINE__LOG__FILTER=warn REGENGINE__PAYMENTS__STRIPE__ENABLED=true \
  REGENGINE__PAYMENTS__STRIPE__API_BASE=http://127.0.0.1:$stub \
  REGENGINE__PAYMENTS__STRIPE__SECRET_KEY=sk_test_loadtest \
  REGENGINE__PAYMENTS__STRIPE__WEBHOOK_SECRETS='["whsec_loadtest"]' \
  REGENGINE__OUTBOX__DELIVERY=$delivery REGENGINE__OUTBOX__SMTP__HOST=127.0.0.1 \
  REGENGINE__OUTBOX__SMTP__PORT="$smtp_port" REGENGINE__OUTBOX__SMTP__SECURITY=none \
  "${gw_pin[@]}" "$GW" >"$data.log" 2>&1 &
pid=$!
for _ in $(seq 1 150); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.2
done
LOADTEST_PASSWORD=$PASSWORD timeout 900 "$LT" webhooks --base "http://127.0.0.1:$port" \
  --stripe-stub 127.0.0.1:$stub --secret whsec_loadtest -n "$N" --quiet \
  --report "$data.json" "$@"
sent() {
  curl -s "http://127.0.0.1:$port/metrics" |
    awk '/^regengine_notify_attempts_total\{channel="email",result="sent"\}/ {print $2}' | cut -d. -f1
}
# CPU seconds (user + system) a process has used so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
start=$(date +%s.%N)
gw_cpu0=$(cpu "$pid")
sink_cpu0=$(cpu "$sink")
at_end=$(sent)
now=${at_end:-0}
for _ in $(seq 1 6000); do
  now=$(sent)
  [ "${now:-0}" -ge "$N" ] && break
  sleep 0.1
done
took=$(echo "$(date +%s.%N) - $start" | bc)
rate=$(echo "scale=0; (${now:-0} - ${at_end:-0}) / $took" | bc)
drained=$((${now:-0} - ${at_end:-0}))
echo "mail ($MAIL): ${at_end:-0} confirmation mails sent when the storm ended; the other $drained in $took s ($rate/s); sent ${now:-0} of $N"
# Who the drain's CPU went to (2 cores here hold both the gateway and the SMTP server).
gw_cpu=$(echo "$(cpu "$pid") - $gw_cpu0" | bc)
sink_cpu=$(echo "$(cpu "$sink") - $sink_cpu0" | bc)
[ "$drained" -gt 0 ] && echo "drain CPU: gateway $gw_cpu s ($(echo "scale=3; $gw_cpu * 1000 / $drained" | bc) ms/mail), SMTP server $sink_cpu s ($(echo "scale=3; $sink_cpu * 1000 / $drained" | bc) ms/mail)"
[ "$MAIL" = on ] && echo "SMTP server received $(find "$maildir" -name '*.eml' | wc -l) messages"
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^notify_(attempts_total|backlog)' | sed 's/^/  /'
kill "$pid" "$sink"
wait "$pid" "$sink" 2>/dev/null
rm -rf "$data" "$data.log" "$data.json" "$data.smtp" "$maildir"
