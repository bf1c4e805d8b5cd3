#!/usr/bin/env bash
# Export the served model unless it is there already; print its path on stdout.
#   WEIGHTS=auto     ImageNet weights if they can be downloaded, else seeded random
#                    weights (the service then warns on start-up and in every response)
#   WEIGHTS=imagenet ImageNet weights or fail
#   WEIGHTS=random   seeded random weights (seed 0)
# PYTHON is the export environment's (torch; `make install-export`, default
# .venv-export/bin/python); INSTALL_EXPORT, when set, is run once before the first export
# (`make serve` sets it, so that serving a model already exported installs no torch).
set -euo pipefail
: "${ARCH:=densenet121}" "${WEIGHTS:=auto}" "${MODEL_DIR:=models}"
: "${PYTHON:=${EXPORT_VENV:-.venv-export}/bin/python}"
imagenet="$MODEL_DIR/$ARCH.onnx"
random="$MODEL_DIR/$ARCH-random.onnx"

export_model() {
  if [ -n "${INSTALL_EXPORT:-}" ]; then
    # Stop here: under WEIGHTS=auto a failure would otherwise read as "the ImageNet weights
    # could not be downloaded" and fall back to random weights.
    if ! $INSTALL_EXPORT >&2; then
      echo "cannot export $ARCH: installing the export environment failed" \
        "($INSTALL_EXPORT); see above" >&2
      exit 1
    fi
    INSTALL_EXPORT=
  fi
  "$PYTHON" -m model_export export --arch "$ARCH" "$@" >&2
}

export_random() {
  [ -f "$random" ] || export_model --weights random --seed 0 --output "$random"
  echo "$random"
}

case "$WEIGHTS" in
  imagenet)
    [ -f "$imagenet" ] || export_model --weights imagenet --output "$imagenet"
    echo "$imagenet" ;;
  random)
    export_random ;;
  auto)
    if [ -f "$imagenet" ] || export_model --weights imagenet --output "$imagenet"; then
      echo "$imagenet"
    else
      cat >&2 <<MSG

  ************************************************************************
  WARNING: the ImageNet weights could not be downloaded (offline?).
  Serving $ARCH with RANDOM, UNTRAINED weights: predictions are meaningless.
  Run with WEIGHTS=imagenet to fail instead; see docs/user-guide.md, "Exporting a model".
  ************************************************************************

MSG
      export_random
    fi ;;
  *)
    echo "WEIGHTS must be auto, imagenet or random (got '$WEIGHTS')" >&2; exit 2 ;;
esac
