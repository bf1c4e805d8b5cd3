#!/usr/bin/env bash
# Builds the real CPU image with podman and runs it the way docs/operations.md tells users to:
#   1. a Debian bookworm + Python base, bootstrapped from the machine's Debian archive
#      (no registry) and cached (scripts/containers/base.sh);
#   2. the Dockerfile's cpu target on that base with MODEL_WEIGHTS=random; the host's pip
#      configuration and what it points at are mounted into the build's RUN steps only,
#      and the image is checked to hold none of it;
#   3. `podman run` as in docs/operations.md ("Containers"): ready, healthcheck, /classify of a real
#      photo, uid 10001, no torch, read-only root; a second container drains 8 requests
#      in flight on `podman stop` and exits 0;
#   4. the Dockerfile's gpu target (onnxruntime-gpu and NVIDIA's CUDA wheels from the
#      package index) on the same base, started without a GPU: one start-up line says so and
#      it serves on the CPU (ready, healthcheck, /classify); settings that demand the GPU
#      are refused at start (scripts/containers/gpu.sh); its size and build time reported;
#   5. `podman-compose up` of the compose CPU service with Prometheus (Debian's package on
#      the same base) scraping it: the same checks through the published port, gRPC health
#      SERVING through the published gRPC port, the compose settings as podman applied
#      them, the target up; then `down`.
# Everything created is removed by id on exit, failure included; the cached base stays.
# Outside CI it skips (exit 0) when podman cannot be installed; in CI that is a failure.
#   BIN=.venv/bin  the project's virtualenv (httpx, podman-compose, scikit-image's photos)
#   DENSENET_CONTAINER_CACHE  where the base tarball is kept (default ~/.cache/densenet-serve)
#   KEEP_WORK=1    keep the scratch directory (logs, generated configuration)
#   CONTAINER_TEST_GPU=0  skip step 4 (about 3 GB more of disk while it runs)
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-.venv/bin}
PY=$BIN/python
CACHE_DIR=${DENSENET_CONTAINER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/densenet-serve}
KEEP_WORK=${KEEP_WORK:-0}
CONTAINER_TEST_GPU=${CONTAINER_TEST_GPU:-1}
RUN_ID="$(date +%Y%m%d%H%M%S)-$$"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/densenet-containers.XXXXXX")
# shellcheck source=scripts/containers/lib.sh
source scripts/containers/lib.sh
# shellcheck source=scripts/containers/base.sh
source scripts/containers/base.sh
# shellcheck source=scripts/containers/checks.sh
source scripts/containers/checks.sh
# shellcheck source=scripts/containers/gpu.sh
source scripts/containers/gpu.sh
# shellcheck source=scripts/containers/compose.sh
source scripts/containers/compose.sh

if ! install_tools; then
    rm -rf "$WORK"
    if [[ -n ${CI:-} ]]; then fail "podman and its tools cannot be installed (CI)"; fi
    say "SKIPPED: podman cannot be installed here; the images were not built or run"
    exit 0
fi
configure_podman
touch "$WORK/created"
trap_errors
trap cleanup EXIT
trap 'exit 130' INT TERM

started=$SECONDS
IMAGE="localhost/densenet-serve-ci:$RUN_ID"
PROMETHEUS_IMAGE="localhost/densenet-prometheus-ci:$RUN_ID"
GPU_IMAGE="localhost/densenet-serve-gpu-ci:$RUN_ID"
PHOTO=$("$PY" -c 'import pathlib, skimage; print(pathlib.Path(skimage.__file__).parent / "data" / "chelsea.png")')
[[ -f $PHOTO ]] || fail "no sample photo at $PHOTO (scikit-image, from the dev extra)"

ensure_base
base_done=$SECONDS

build_image
check_image_traces "$IMAGE"
build_done=$SECONDS

check_podman_run
check_podman_stop_drains
run_done=$SECONDS

gpu_timing="skipped (CONTAINER_TEST_GPU=0)"
if [[ $CONTAINER_TEST_GPU != 0 ]]; then
    build_gpu_image
    gpu_built=$SECONDS
    check_gpu_image
    gpu_timing="$((gpu_built - run_done)) s to build, $((SECONDS - gpu_built)) s to check"
    # Its layers go now: the compose step below needs only the CPU image.
    podman rmi --force "$GPU_IMAGE" >/dev/null
fi
gpu_done=$SECONDS

build_prometheus_image
check_compose
compose_done=$SECONDS

say "timings: base $((base_done - started)) s, build $((build_done - base_done)) s," \
    "podman run $((run_done - build_done)) s, GPU image $gpu_timing," \
    "compose + Prometheus $((compose_done - gpu_done)) s," \
    "total $((compose_done - started)) s"
say "PASSED"
