#!/usr/bin/env bash
# Installs Prometheus (Debian package `prometheus`, which includes promtool) for
# tests/test_prometheus_integration.py, unless `prometheus` is already on PATH.
# Idempotent and quiet. Needs root (or sudo) and apt-get.
set -euo pipefail

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install-prometheus: no apt-get here; install Prometheus (with promtool) by hand" >&2
    exit 1
fi
sudo=""
if [[ $(id -u) -ne 0 ]]; then
    sudo="sudo"
fi
echo "install-prometheus: installing the Debian package prometheus" >&2
# The test starts its own Prometheus on a free loopback port. On a host that runs
# systemd the package also enables a prometheus service on :9090; in containers and CI
# (no init system) it does not start one.
$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    prometheus >/dev/null
command -v prometheus >/dev/null && command -v promtool >/dev/null
