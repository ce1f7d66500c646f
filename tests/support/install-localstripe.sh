#!/usr/bin/env bash
# Installs localstripe (pinned, from PyPI) into the virtual environment $1, unless it is there
# already. Used by the end-to-end tests (tests/src/lib.rs) and by .ci/run.
set -euo pipefail
VENV=$1
VERSION=1.15.10
if "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('localstripe') != '$VERSION')" 2>/dev/null; then
  exit 0
fi
echo "== installing localstripe $VERSION into $VENV" >&2
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "localstripe==$VERSION"
