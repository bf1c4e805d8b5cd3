# shellcheck shell=bash
# Shared by scripts/container-test.sh: messages, the tools, podman's per-run
# configuration, and the record of everything the run creates (removed by id on exit).
# Sourced, not run; expects WORK (this run's scratch directory) to be set.

say() { echo "container-test: $*" >&2; }

# Without systemd, podman cannot schedule the periodic health checks and says so on every
# start and removal of a container with a HEALTHCHECK; the checks call
# `podman healthcheck run` themselves instead, so those lines are only noise.
# The filter is exec'd: a bash subshell left waiting for it would hold the stdout of a
# `$(...)` around the call open for as long as grep reads, and grep reads as long as
# conmon, which inherits podman's stderr, keeps a detached container running.
podman() {
    command podman "$@" 2> >(exec grep -v 'unable to get systemd connection' >&2)
}
fail() { say "FAIL: $*"; exit 1; }

# Debian packages the checks need, by a file each one installs.
declare -A TOOL_FILES=(
    [podman]=/usr/bin/podman [buildah]=/usr/bin/buildah [debootstrap]=/usr/sbin/debootstrap
    [runc]=/usr/sbin/runc [catatonit]=/usr/bin/catatonit
    # netavark + aardvark-dns: compose services find each other by name (Prometheus ->
    # classifier:8000); Debian's podman otherwise falls back to CNI without DNS.
    [netavark]=/usr/lib/podman/netavark [aardvark-dns]=/usr/lib/podman/aardvark-dns
    # netavark runs iptables to set up every network, the build's included; without it
    # `podman build` fails at the first RUN step ("netavark: No such file or directory").
    [iptables]=/usr/sbin/iptables
)

# Installs the missing packages; returns non-zero when that is not possible here.
install_tools() {
    local missing=() package sudo=""
    for package in "${!TOOL_FILES[@]}"; do
        [[ -e ${TOOL_FILES[$package]} ]] || missing+=("$package")
    done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null || { say "no apt-get to install ${missing[*]}"; return 1; }
    if [[ $(id -u) -ne 0 ]]; then
        sudo -n true 2>/dev/null || { say "installing ${missing[*]} needs root"; return 1; }
        sudo="sudo -n"
    fi
    say "installing the Debian packages ${missing[*]}"
    $sudo apt-get update -qq || return 1
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null || return 1
}

# podman's configuration for this run only (the host's files stay as they are):
#  - the default open-files and process limits cannot be raised in these sandboxes
#    (setrlimit: Operation not permitted), so containers get fixed ones;
#  - crun refuses a hybrid cgroup v1/v2 layout; runc accepts it;
#  - no systemd: cgroupfs, and events in a file rather than the journal.
configure_podman() {
    cat >"$WORK/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"

[network]
network_backend = "netavark"
CONF
    export CONTAINERS_CONF="$WORK/containers.conf"
}

# --- what this run creates ------------------------------------------------------------
# One line per object: "KIND ID". cleanup removes them in reverse order of dependency.

track() { echo "$1 $2" >>"$WORK/created"; }

# Image ids now, to tell apart what a build leaves behind (intermediate stages).
snapshot_images() { podman images --all --quiet --no-trunc | sort -u >"$1"; }

track_new_images() {
    local id
    snapshot_images "$WORK/images.after"
    for id in $(comm -13 "$1" "$WORK/images.after"); do track image "$id"; done
}

# Everything a compose project made, by its label (also after a failed `up`).
track_compose_project() {
    local label="label=io.podman.compose.project=$1" id
    for id in $(podman ps --all --quiet --no-trunc --filter "$label"); do track container "$id"; done
    # podman-compose names its pod but does not label it.
    for id in $(podman pod ps --quiet --no-trunc --filter "name=^pod_$1\$"); do track pod "$id"; done
    for id in $(podman network ls --quiet --no-trunc --filter "$label"); do track network "$id"; done
    for id in $(podman volume ls --quiet --filter "$label"); do track volume "$id"; done
}

remove_kind() {
    local kind=$1 id
    shift
    awk -v k="$kind" '$1 == k { print $2 }' "$WORK/created" | sort -u | while read -r id; do
        "$@" "$id" >/dev/null 2>&1 || true
    done
}

# On failure, before anything is removed: the tail of every log this run wrote and of every
# container it started, so that the cause of a failure outlives the scratch directory.
report_failure() {
    local log id
    for log in "$WORK"/*.log; do
        [[ -s $log ]] || continue
        say "--- last 30 lines of $(basename "$log") ---"
        tail -n 30 "$log" >&2
    done
    [[ -f $WORK/created ]] || return 0
    awk '$1 == "container" { print $2 }' "$WORK/created" | sort -u | while read -r id; do
        podman container exists "$id" || continue
        say "--- container ${id:0:12} ($(podman inspect --format '{{.Name}} {{.State.Status}} exit {{.State.ExitCode}}' "$id")): last 30 log lines ---"
        podman logs --tail 30 "$id" 2>&1 | cat >&2
    done
}

# A command that fails outside an explicit `|| fail` still names itself and its line.
trap_errors() {
    set -E
    trap 'say "FAIL: \"$BASH_COMMAND\" exited $? (${BASH_SOURCE[0]}:$LINENO, in ${FUNCNAME[0]:-main})"' ERR
}

cleanup() {
    local status=$?
    set +e
    trap - ERR
    ((status == 0)) || report_failure
    if [[ -f $WORK/created ]]; then
        [[ -n ${COMPOSE_PROJECT:-} ]] && track_compose_project "$COMPOSE_PROJECT"
        remove_kind container podman rm --force --ignore --time 0
        remove_kind pod podman pod rm --force --ignore
        remove_kind network podman network rm --force
        remove_kind volume podman volume rm --force
        remove_kind image podman rmi --force
        local left
        left=$(leftovers)
        if [[ -n $left ]]; then
            say "FAIL: could not remove:"$'\n'"$left"
            status=1
        else
            say "removed all $(sort -u "$WORK/created" | wc -l) objects this run created"
        fi
    fi
    [[ $KEEP_WORK == 1 ]] || rm -rf "$WORK"
    exit "$status"
}

# After cleanup: nothing this run made is left (the cached base image is kept on purpose).
leftovers() {
    local kind id
    while read -r kind id; do
        case $kind in
            container) podman container exists "$id" && echo "$kind $id" ;;
            pod) podman pod exists "$id" && echo "$kind $id" ;;
            network) podman network exists "$id" && echo "$kind $id" ;;
            volume) podman volume exists "$id" && echo "$kind $id" ;;
            image) podman image exists "$id" && echo "$kind $id" ;;
        esac
    done < <(sort -u "$WORK/created")
    return 0
}

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
