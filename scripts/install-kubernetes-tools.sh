#!/usr/bin/env bash
# Installs what tests/test_kubernetes.py needs besides the dev extra (which brings kubectl,
# for its built-in kustomize, and kubernetes-validate): the npm packages that validate the
# KEDA and Prometheus Operator resources (deploy/kubernetes/crd-validation, versions
# pinned in its package-lock.json). Needs node and npm. Idempotent and quiet.
set -euo pipefail
cd "$(dirname "$0")/../deploy/kubernetes/crd-validation"

if [[ -d node_modules/@kubernetes-models/keda && -d node_modules/@kubernetes-models/prometheus-operator ]]; then
    exit 0
fi
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    echo "install-kubernetes-tools: node and npm are needed (Debian packages nodejs, npm)" >&2
    exit 1
fi
echo "install-kubernetes-tools: npm ci in deploy/kubernetes/crd-validation" >&2
npm ci --no-audit --no-fund --loglevel=error >/dev/null
