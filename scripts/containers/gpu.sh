# shellcheck shell=bash
# The GPU image for scripts/container-test.sh, on a machine without a GPU: the Dockerfile's
# gpu target (onnxruntime-gpu and NVIDIA's CUDA 13 wheels from the package index) on the
# same bootstrapped base as the CPU image, then three starts of it:
#   1. as docs/gpu.md runs it: one start-up line says there is no CUDA device and that it serves
#      on the CPU; ready, healthcheck, /classify as for the CPU image;
#   2. DENSENET_PRECISION=fp16 and 3. DENSENET_PROVIDERS naming CUDA: refused at start, one
#      clear line, a non-zero exit.
# Sourced, not run. Reads IMAGE (the CPU image: its /models/ stands in for the export
# stage, so the model is not exported twice), BASE_IMAGE, PIP_VOLUMES, PY and WORK.
# shellcheck disable=SC2153

NO_CUDA_WORDS="no CUDA device"
REFUSAL_DEADLINE_S=120

build_gpu_image() {
    snapshot_images "$WORK/images.before-gpu"
    say "building the gpu target (log: $WORK/gpu-build.log)"
    local status=0 started=$SECONDS
    podman build --format docker --layers=false --force-rm --pull=never \
        --target gpu --build-arg "PYTHON_IMAGE=$BASE_IMAGE" \
        --build-context "export=container-image://$IMAGE" \
        "${PIP_VOLUMES[@]}" --tag "$GPU_IMAGE" . >"$WORK/gpu-build.log" 2>&1 || status=$?
    track_new_images "$WORK/images.before-gpu"
    if ((status)); then
        tail -30 "$WORK/gpu-build.log" >&2
        fail "podman build --target gpu exited $status"
    fi
    local bytes
    bytes=$(podman image inspect --format '{{.Size}}' "$GPU_IMAGE")
    say "built $GPU_IMAGE in $((SECONDS - started)) s: $((bytes / 1000000)) MB" \
        "(the CPU image: $(($(podman image inspect --format '{{.Size}}' "$IMAGE") / 1000000)) MB)"
}

# The first start: falls back to the CPU, says so once, and serves.
check_gpu_fallback() {
    local port cid lines
    port=$(free_port)
    say "podman run of the GPU image without a GPU, on 127.0.0.1:$port"
    cid=$(readme_run "$port" "$GPU_IMAGE")
    check_service "$cid" "http://127.0.0.1:$port"
    podman logs "$cid" >"$WORK/gpu-fallback.log" 2>&1
    lines=$(grep -c "$NO_CUDA_WORDS" "$WORK/gpu-fallback.log" || true)
    [[ $lines == 1 ]] || fail "$lines start-up lines say '$NO_CUDA_WORDS' (expected one)"
    grep "$NO_CUDA_WORDS" "$WORK/gpu-fallback.log" | grep -q "serving on the CPU" ||
        fail "the no-CUDA line does not say that it serves on the CPU"
    say "ok: $(grep -o "precision [^\"]*${NO_CUDA_WORDS}[^\"]*" "$WORK/gpu-fallback.log")"
    podman rm --force --time "$STOP_GRACE_S" "$cid" >/dev/null
}

# A start with SETTING (NAME=VALUE) must end non-zero, its log naming the missing device.
check_gpu_refusal() {
    local setting=$1 cid code
    podman run --detach --cidfile "$WORK/cid" -e "$setting" "$GPU_IMAGE" >/dev/null
    cid=$(cat "$WORK/cid")
    rm -f "$WORK/cid"
    track container "$cid"
    code=$(timeout "$REFUSAL_DEADLINE_S" podman wait "$cid") ||
        fail "$setting: still running after ${REFUSAL_DEADLINE_S} s (expected a refusal)"
    podman logs "$cid" >"$WORK/gpu-refusal.log" 2>&1
    [[ $code != 0 ]] || fail "$setting: the container exited 0 (expected a refusal)"
    grep -q "there is no CUDA device" "$WORK/gpu-refusal.log" ||
        { tail -5 "$WORK/gpu-refusal.log" >&2; fail "$setting: no line says there is no CUDA device"; }
    say "ok: $setting refused, exit $code: $(grep -o 'there is no CUDA device[^"]*' "$WORK/gpu-refusal.log" | head -1)"
    podman rm "$cid" >/dev/null
}

check_gpu_image() {
    check_image_traces "$GPU_IMAGE"
    check_gpu_fallback
    check_gpu_refusal DENSENET_PRECISION=fp16
    check_gpu_refusal DENSENET_PROVIDERS=CUDAExecutionProvider,CPUExecutionProvider
}
