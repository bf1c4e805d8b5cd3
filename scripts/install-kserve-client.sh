#!/usr/bin/env bash
# Makes .venv-kserve, a virtualenv holding KServe's Python SDK, for
# tests/test_kserve_client.py. kserve pins older versions of packages (protobuf among them)
# than the project's own .venv carries, so it cannot share it. Idempotent and quiet.
set -euo pipefail

PYTHON=${PYTHON:-python3}
VENV=${KSERVE_VENV:-.venv-kserve}
[[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c "import kserve" 2>/dev/null && exit 0
echo "install-kserve-client: installing kserve into $VENV" >&2
# Whatever stands there is not a working kserve environment (a half-made folder, a link to
# a folder that is gone): make it anew rather than fail on "File exists".
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet 'kserve>=0.14'
"$VENV/bin/python" -c "import kserve"
