# shellcheck shell=bash
# The CPU image for scripts/container-test.sh: building it, checking what it holds, and
# running it the way docs/operations.md ("Containers") does. Sourced, not run.
# Reads IMAGE, BASE_IMAGE, PHOTO, PY and WORK, set by scripts/container-test.sh.
# shellcheck disable=SC2153

READY_DEADLINE_S=180 # model load and warm-up on a busy 2-core machine
STOP_GRACE_S=40      # docs/operations.md: --stop-timeout 40 (compose: stop_grace_period: 40s)
UID_EXPECTED=10001

# The host's pip configuration and what it names (indexes, wheels, CA bundle), as a home
# directory mounted read-only over the build's /root: RUN steps see it, the committed
# layers hold nothing of it (scripts/containers/pipconf.py says why /root).
pip_build_volumes() {
    "$PY" -m pip config list | "$PY" scripts/containers/pipconf.py "$WORK/build-home" \
        >"$WORK/pip-mounts"
    PIP_VOLUMES=(--volume "$WORK/build-home:/root:ro")
    say "build-time pip configuration: $(grep -c = "$WORK/build-home/.config/pip/pip.conf")" \
        "settings; carried: $(cut -d' ' -f1 "$WORK/pip-mounts" | tr '\n' ' ')"
}

# The export stage installs torch from TORCH_INDEX_URL (PyTorch's CPU wheel index). Where
# this machine cannot resolve that host, the host's own index takes its place: the
# configured index-url, else pip's default (torch then comes from whichever of the
# host's sources has it, as on the host; the stage is thrown away either way).
torch_index_arg() {
    local default host
    default=$(sed -n 's/^ARG TORCH_INDEX_URL=//p' Dockerfile)
    host=$("$PY" -c 'import sys, urllib.parse; print(urllib.parse.urlsplit(sys.argv[1]).hostname)' "$default")
    getent hosts "$host" >/dev/null && return
    local index
    index=$("$PY" -m pip config get global.index-url 2>/dev/null ||
        "$PY" -c 'from pip._internal.models.index import PyPI; print(PyPI.simple_url)')
    index=${PIP_INDEX_URL:-$index}
    say "$host does not resolve here: TORCH_INDEX_URL=$index"
    TORCH_INDEX_ARG=(--build-arg "TORCH_INDEX_URL=$index")
}

build_image() {
    pip_build_volumes
    TORCH_INDEX_ARG=()
    torch_index_arg
    snapshot_images "$WORK/images.before-build"
    say "building the cpu target (log: $WORK/build.log)"
    # --format docker: the OCI image format has no HEALTHCHECK. --layers=false: no cache of
    # the multi-GB export stage is kept between runs.
    local status=0
    podman build --format docker --layers=false --force-rm --pull=never \
        --target cpu --build-arg "PYTHON_IMAGE=$BASE_IMAGE" --build-arg MODEL_WEIGHTS=random \
        "${TORCH_INDEX_ARG[@]}" "${PIP_VOLUMES[@]}" --tag "$IMAGE" . >"$WORK/build.log" 2>&1 || status=$?
    track_new_images "$WORK/images.before-build"
    if ((status)); then
        tail -30 "$WORK/build.log" >&2
        fail "podman build exited $status"
    fi
    say "built $IMAGE ($(podman image inspect --format '{{.Size}}' "$IMAGE") bytes)"
}

# The image must hold nothing of the build-time configuration: no pip configuration file
# (pip config debug), no path of the host's index or wheels that the base lacks, /root as
# in the base, the base's own CA bundle, no host path in its history; and no torch.
check_image_traces() {
    local image=$1 path history
    cut -d' ' -f1 "$WORK/pip-mounts" >"$WORK/host-paths"
    image_facts "$BASE_IMAGE" >"$WORK/facts.base"
    image_facts "$image" >"$WORK/facts.image"
    diff "$WORK/facts.base" "$WORK/facts.image" >&2 ||
        fail "the image differs from its base in the facts above (base <, image >)"
    podman run --rm --network none --health-cmd none --entrypoint python "$image" \
        -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is not None)' ||
        fail "torch is installed in the image"
    history=$(podman history --no-trunc --format '{{.CreatedBy}}' "$image")
    while read -r path; do
        [[ $history != *"$path"* ]] || fail "the image history names $path"
    done <"$WORK/host-paths"
    say "ok: no pip configuration, index paths, extra certificates or torch in the image"
}

# What must not differ between the base and the built image.
image_facts() {
    # shellcheck disable=SC2046  # one argument per path
    podman run --rm --network none --health-cmd none --user 0 --entrypoint python3 "$1" -c '
import hashlib, os, subprocess, sys
files = subprocess.run([sys.executable, "-m", "pip", "config", "debug"], text=True,
                       capture_output=True).stdout
print("pip config files:", [l.strip() for l in files.splitlines() if "exists: True" in l])
print("host paths present:", [p for p in sys.argv[1:] if os.path.lexists(p)])
print("/root:", sorted(os.listdir("/root")))
bundle = "/etc/ssl/certs/ca-certificates.crt"
print("CA bundle:", hashlib.sha256(open(bundle, "rb").read()).hexdigest())
' /etc/pip.conf /etc/xdg/pip /root/.config /root/.pip $(cat "$WORK/host-paths")
}

# Waits until the container answers ready, failing at once if it stops running (a
# broken entrypoint, a crash on a read-only root) rather than at the deadline.
wait_ready() {
    local cid=$1 url=$2 deadline=$((SECONDS + READY_DEADLINE_S))
    until "$PY" scripts/containers/probe.py ready "$url" 5 2>/dev/null; do
        if [[ $(podman container inspect --format '{{.State.Running}}' "$cid") != true ]]; then
            podman logs --tail 30 "$cid" >&2
            fail "the container exited with $(podman container inspect --format '{{.State.ExitCode}}' "$cid") before it was ready"
        fi
        ((SECONDS < deadline)) || { podman logs --tail 30 "$cid" >&2; fail "not ready within ${READY_DEADLINE_S} s"; }
    done
}

# Checks of a started classifier container, through URL (its published port).
check_service() {
    local cid=$1 url=$2 hpid uids
    wait_ready "$cid" "$url"
    podman healthcheck run "$cid" >/dev/null || fail "podman healthcheck run: unhealthy"
    say "ok: podman healthcheck run passes"
    "$PY" scripts/containers/probe.py classify "$url" "$PHOTO" || fail "/classify"
    hpid=$(podman top "$cid" hpid args | awk '/-m app/ { print $1; exit }')
    [[ -n $hpid ]] || fail "no 'python -m app' process in the container"
    # /proc/PID/status: "Uid: real effective saved filesystem"
    uids=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$hpid/status")
    [[ $uids == "$UID_EXPECTED $UID_EXPECTED $UID_EXPECTED $UID_EXPECTED" ]] ||
        fail "the server runs with uids $uids"
    say "ok: the server process runs as uid $UID_EXPECTED"
    podman exec "$cid" python -c 'import importlib.util as u, sys; sys.exit(u.find_spec("torch") is not None)' ||
        fail "torch is importable in the running container"
    if podman exec "$cid" python -c 'open("/opt/densenet/written", "w")' 2>"$WORK/write.err"; then
        fail "the root filesystem is writable"
    fi
    grep -q 'Read-only file system' "$WORK/write.err" || fail "write refused, but not read-only: $(cat "$WORK/write.err")"
    podman exec "$cid" python -c 'open("/tmp/written", "w").write("x")' || fail "/tmp is not writable"
    say "ok: no torch; the root filesystem is read-only and /tmp writable"
}

# docs/operations.md: docker run --init --rm -p 8000:8000 --read-only --tmpfs /tmp --stop-timeout 40
# Without --rm, so that the exit code and log outlive the container; removed by id.
readme_run() {
    local port=$1 cid
    shift
    podman run --detach --init --cidfile "$WORK/cid" -p "127.0.0.1:$port:8000" \
        --read-only --tmpfs /tmp --stop-timeout "$STOP_GRACE_S" "$@" >/dev/null
    cid=$(cat "$WORK/cid")
    rm -f "$WORK/cid"
    track container "$cid"
    echo "$cid"
}

check_podman_run() {
    local port cid
    port=$(free_port)
    say "podman run as the operations guide shows, on 127.0.0.1:$port"
    cid=$(readme_run "$port" "$IMAGE")
    check_service "$cid" "http://127.0.0.1:$port"
    podman rm --force --time "$STOP_GRACE_S" "$cid" >/dev/null
}

# The same command with a long batch delay, so that the 8 requests provably wait in the
# queue when SIGTERM arrives.
check_podman_stop_drains() {
    local port cid code
    port=$(free_port)
    cid=$(readme_run "$port" -e DENSENET_MAX_BATCH_DELAY_MS=20000 -e DENSENET_MAX_BATCH_SIZE=64 \
        "$IMAGE")
    say "podman stop during 8 requests in flight"
    wait_ready "$cid" "http://127.0.0.1:$port"
    "$PY" scripts/containers/probe.py drain "http://127.0.0.1:$port" "$PHOTO" 8 "$STOP_GRACE_S" \
        -- podman stop --time "$STOP_GRACE_S" "$cid" || fail "drain on podman stop"
    code=$(podman inspect --format '{{.State.ExitCode}}' "$cid")
    [[ $code == 0 ]] || { podman logs --tail 20 "$cid" >&2; fail "the container exited $code"; }
    podman logs "$cid" 2>&1 | grep -q 'drained; stopping' || fail "no 'drained' line in the log"
    say "ok: the container drained and exited 0"
    podman rm "$cid" >/dev/null
}
