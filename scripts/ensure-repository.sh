#!/usr/bin/env bash
# Export each model of MODELS (as ensure-model.sh does, same WEIGHTS rules) and lay them
# out as a model repository, MODEL_DIR/repository/<arch>/1/model.onnx (links to the
# exported files); print the repository's path on stdout. The repository holds exactly
# MODELS: it is rebuilt on every run. PYTHON and INSTALL_EXPORT pass to ensure-model.sh
# (the export environment's Python, default .venv-export/bin/python; INSTALL_EXPORT then runs
# before each model that has to be exported, so it must do nothing once installed, as
# `make install-export` does).
set -euo pipefail
: "${MODELS:?MODELS lists the architectures to serve, e.g. MODELS=\"densenet121 densenet169\"}"
: "${MODEL_DIR:=models}"
here=$(dirname "$0")
repository="$MODEL_DIR/repository"
rm -rf "$repository"
for arch in $MODELS; do
  model=$(ARCH="$arch" MODEL_DIR="$MODEL_DIR" "$here/ensure-model.sh")
  mkdir -p "$repository/$arch/1"
  ln -s "../../../$(basename "$model")" "$repository/$arch/1/model.onnx"
done
echo "$repository"
