#!/usr/bin/env bash
# Installs HAProxy (Debian package `haproxy`) for tests/test_replicas.py and
# bench/replicas.py, unless it is already there. Idempotent and quiet. Needs root (or
# sudo) and apt-get. Debian puts the binary in /usr/sbin, which the tests also search.
set -euo pipefail

if command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]]; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install-haproxy: no apt-get here; install HAProxy (2.4 or newer) by hand" >&2
    exit 1
fi
sudo=""
if [[ $(id -u) -ne 0 ]]; then
    sudo="sudo"
fi
echo "install-haproxy: installing the Debian package haproxy" >&2
# The tests start their own HAProxy on loopback ports. On a host that runs systemd the
# package also enables a haproxy service with its default configuration (no listener);
# in containers and CI (no init system) it does not start one.
$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    haproxy >/dev/null
command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]]
