#!/usr/bin/env bash
# The export environment (EXPORT_VENV, default .venv-export): torch and torchvision for
# `python -m model_export`, kept out of the service's environment, which needs no torch.
# torch comes from PyTorch's CPU wheel index (TORCH_INDEX_URL), as the Dockerfile's export
# stage does: the default index's Linux build brings CUDA and 14 nvidia-* wheels (about
# 4.4 GB) that an export never uses. Where that index cannot be reached, the default index
# is used, and says so.
set -euo pipefail
: "${PYTHON:=python3}" "${EXPORT_VENV:=.venv-export}"
: "${TORCH_INDEX_URL:=https://download.pytorch.org/whl/cpu}"
python=$EXPORT_VENV/bin/python

[ -x "$python" ] || "$PYTHON" -m venv "$EXPORT_VENV"
"$python" -m pip install --upgrade --quiet pip

if "$python" - "$TORCH_INDEX_URL/torch/" <<'PY' 2>/dev/null; then
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=15).close()
PY
  echo "installing torch (CPU build) from $TORCH_INDEX_URL into $EXPORT_VENV" >&2
  "$python" -m pip install --quiet --index-url "$TORCH_INDEX_URL" torch torchvision
else
  echo "$TORCH_INDEX_URL cannot be reached: installing torch from the default index into" \
    "$EXPORT_VENV (on Linux that build carries CUDA: several GB)" >&2
fi
# The exporter and what it needs besides torch (an installed torch satisfies the extra).
"$python" -m pip install --quiet -e '.[export]'
