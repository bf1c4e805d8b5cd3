#!/usr/bin/env bash
# Export the served model unless it is there already; print its path on stdout.
#   WEIGHTS=auto     ImageNet weights if they can be downloaded, else seeded random
#                    weights (the service then warns on start-up and in every response)
#   WEIGHTS=imagenet ImageNet weights or fail
#   WEIGHTS=random   seeded random weights (seed 0)
set -euo pipefail
: "${ARCH:=densenet121}" "${WEIGHTS:=auto}" "${MODEL_DIR:=models}" "${PYTHON:=python3}"
imagenet="$MODEL_DIR/$ARCH.onnx"
random="$MODEL_DIR/$ARCH-random.onnx"

export_random() {
  [ -f "$random" ] || "$PYTHON" -m model_export export --arch "$ARCH" --weights random --seed 0 --output "$random" >&2
  echo "$random"
}

case "$WEIGHTS" in
  imagenet)
    [ -f "$imagenet" ] || "$PYTHON" -m model_export export --arch "$ARCH" --weights imagenet --output "$imagenet" >&2
    echo "$imagenet" ;;
  random)
    export_random ;;
  auto)
    if [ -f "$imagenet" ] || "$PYTHON" -m model_export export --arch "$ARCH" --weights imagenet --output "$imagenet" >&2; then
      echo "$imagenet"
    else
      cat >&2 <<MSG

  ************************************************************************
  WARNING: the ImageNet weights could not be downloaded (offline?).
  Serving $ARCH with RANDOM, UNTRAINED weights: predictions are meaningless.
  Run with WEIGHTS=imagenet to fail instead, or see README "Exporting a model".
  ************************************************************************

MSG
      export_random
    fi ;;
  *)
    echo "WEIGHTS must be auto, imagenet or random (got '$WEIGHTS')" >&2; exit 2 ;;
esac
