#!/usr/bin/env bash
# Installs the Python servers and checkers the end-to-end tests start (pinned, from PyPI) into
# the virtual environment $1, unless they are there already:
#   localstripe  a stateful fake Stripe server (payment tests)
#   aiosmtpd     a real SMTP server, the mail tests' sink (tests/support/smtp_sink.py)
#   icalendar    a third-party iCalendar parser that reads the mails' .ics back
#   cryptography signs the fake SendGrid's event webhooks (tests/support/fake_sendgrid.py)
#   standardwebhooks  the Standard Webhooks reference verifier (tests/support/webhook_receiver.py)
# Used by the end-to-end tests (tests/src/lib.rs) and by .ci/run.
set -euo pipefail
VENV=$1
PINS=(localstripe==1.15.10 aiosmtpd==1.4.6 icalendar==7.3.2 cryptography==51.0.1 standardwebhooks==1.0.0)
if "$VENV/bin/python" - "${PINS[@]}" <<'PY' 2>/dev/null; then
import importlib.metadata as m, sys
sys.exit(any(m.version(n) != v for n, v in (p.split("==") for p in sys.argv[1:])))
PY
  exit 0
fi
echo "== installing ${PINS[*]} into $VENV" >&2
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "${PINS[@]}"
