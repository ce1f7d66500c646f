#!/usr/bin/env bash
# Webhook-to-confirmation throughput on this machine (loopback only): a fresh gateway with Stripe
# pointed at the Stripe API stub `loadtest webhooks` serves, then `loadtest webhooks`
# (N payments started, their signed payment_intent.succeeded delivered with 30% redeliveries).
# Prints the loadtest's summary and the server's regengine_payment_webhook_to_confirmation_seconds.
#
#   GW=target/release/gateway LT=target/release/loadtest bash loadtest/scripts/webhooks.sh [N] [loadtest args]
set -u
N=${1:-20000}
shift || true
GW=${GW:-target/release/gateway}
LT=${LT:-target/release/loadtest}
PASSWORD=webhooks-password-12345
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
  "$GW" >"$data.log" 2>&1 &
pid=$!
for _ in $(seq 1 150); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.2
done
LOADTEST_PASSWORD=$PASSWORD timeout 900 "$LT" webhooks --base "http://127.0.0.1:$port" \
  --stripe-stub 127.0.0.1:$stub --secret whsec_loadtest -n "$N" --quiet \
  --report "$data.json" "$@"
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^payment_webhook_to_confirmation_seconds_(sum|count)'
# Each confirmation is due an invoice, issued by the invoice relay behind the confirmations:
# how many were issued when the storm ended, and how long the rest took.
invoices() {
  curl -s "http://127.0.0.1:$port/metrics" |
    awk '/^regengine_invoices_issued_total\{kind="invoice"\}/ {print $2}' | cut -d. -f1
}
start=$(date +%s.%N)
at_end=$(invoices)
for _ in $(seq 1 600); do
  now=$(invoices)
  [ "${now:-0}" -ge "$N" ] && break
  sleep 0.1
done
echo "invoices: ${at_end:-0} issued when the storm ended, ${now:-0} after $(echo "$(date +%s.%N) - $start" | bc) s"
kill "$pid"
wait "$pid" 2>/dev/null
rm -rf "$data" "$data.log" "$data.json"
