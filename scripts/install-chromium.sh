#!/usr/bin/env bash
# Installs Debian's Chromium for tests/test_docs_browser.py, unless it is already there.
# Idempotent and quiet. Needs root (or sudo) and apt-get.
set -euo pipefail

command -v chromium >/dev/null && exit 0
if ! command -v apt-get >/dev/null; then
    echo "install-chromium: no apt-get here; install Chromium by hand" >&2
    exit 1
fi
sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
echo "install-chromium: installing the Debian package chromium" >&2
$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium >/dev/null
command -v chromium >/dev/null
