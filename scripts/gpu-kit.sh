#!/usr/bin/env bash
# Makes the offline GPU kit (docs/gpu.md): on a machine that can reach the package index,
# every wheel the service, the model export and `python -m bench gpu` need on the GPU machine that
# it does not already have, onnxruntime-gpu included, in folders of at most 60 MB, with a
# manifest, checksums and the one script to run there (run.sh = scripts/gpu-check.sh).
#   scripts/gpu-kit.sh [--kit .gpu-kit] [--target-has FILE] [--python-version 3.12]
#                      [--platform manylinux_2_28_x86_64] [--part-size BYTES]
#                      [--requirements FILE] [--pip-arg ARG] ...
# Defaults: the machine scripts/gpu-kit-target-has.txt describes (Python 3.12, PyTorch 2.11
# for CUDA 13, no onnxruntime-gpu; a --target-has given wins) and the requirements in
# scripts/gpu-kit-requirements.txt beside pyproject.toml's (any --requirements or
# --project given replaces them). Then copy the repository and each
# .gpu-kit/part-NNN folder over, and run .gpu-kit/run.sh there.
#   PYTHON  the Python whose pip resolves and downloads (default .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}
KIT=.gpu-kit
args=()
while (($#)); do
    case $1 in
        --kit) KIT=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
# Defaults for what is not given: the target list, and the requirements (pyproject.toml's
# and scripts/gpu-kit-requirements.txt's) unless some are given.
defaults=(--target-has scripts/gpu-kit-target-has.txt)
if [[ " ${args[*]} " != *" --requirements "* && " ${args[*]} " != *" --project "* ]]; then
    defaults+=(--project pyproject.toml --requirements scripts/gpu-kit-requirements.txt)
fi
"$PYTHON" scripts/gpu_kit.py --kit "$KIT" "${defaults[@]}" "${args[@]}"
install -m 0755 scripts/gpu-check.sh "$KIT/run.sh"
echo "gpu-kit: done; on the GPU machine, from the repository: $KIT/run.sh (docs/gpu.md)" >&2
