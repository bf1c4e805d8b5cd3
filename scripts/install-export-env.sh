#!/usr/bin/env bash
# The export environment (EXPORT_VENV, default .venv-export): torch and torchvision for
# `python -m model_export`, kept out of the service's environment, which needs no torch.
# torch comes from PyTorch's CPU wheel index (TORCH_INDEX_URL), as the Dockerfile's export
# stage does: the default index's Linux build brings CUDA and 14 nvidia-* wheels (about
# 4.4 GB) that an export never uses. pip itself tries that index, so that its own settings
# (pip.conf, PIP_* variables: proxy, certificates) apply; where it cannot install torch from
# there (unreachable, or no wheel for this platform), the default index is used, and says so.
set -euo pipefail
: "${PYTHON:=python3}" "${EXPORT_VENV:=.venv-export}"
: "${TORCH_INDEX_URL:=https://download.pytorch.org/whl/cpu}"
python=$EXPORT_VENV/bin/python

[ -x "$python" ] || "$PYTHON" -m venv "$EXPORT_VENV"
"$python" -m pip install --upgrade --quiet pip

# torch and torchvision must be builds of one another: pip may take one of them from its
# find-links instead of the CPU index, and a torchvision built for another torch fails only
# when its operators are first used ("operator torchvision::nms does not exist").
works='import torch, torchvision; torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)'
echo "installing torch (CPU build) from $TORCH_INDEX_URL into $EXPORT_VENV" >&2
if "$python" -m pip install --quiet --index-url "$TORCH_INDEX_URL" torch torchvision \
  && "$python" -c "$works" 2>/dev/null; then
  :
else
  echo "torch and torchvision could not be installed together from $TORCH_INDEX_URL (pip says" \
    "why above, if it did): installing them from the default index into $EXPORT_VENV (on" \
    "Linux that build carries CUDA: several GB)" >&2
  "$python" -m pip uninstall --quiet --yes torch torchvision 2>/dev/null || true
fi
# The exporter and what it needs besides torch (an installed torch satisfies the extra; where
# the CPU build failed, this installs torch from the default index).
"$python" -m pip install --quiet -e '.[export]'
"$python" -c "$works" || {
  echo "the export environment's torch and torchvision do not work together" >&2
  exit 1
}
