# shellcheck shell=bash
# docker-compose.yml's CPU service and Prometheus under podman-compose, for
# scripts/container-test.sh. Sourced, not run.
#
# The compose file is used as it is; a generated override file only swaps the images for
# the ones this run built (the classifier image, and Prometheus from Debian's package
# instead of prom/prometheus, which no registry here serves). Grafana is not started:
# Debian has no package for it.

build_prometheus_image() {
    local context="$WORK/prometheus-image"
    mkdir -p "$context"
    # Debian's package runs as its `prometheus` user; /prometheus is owned by it so that
    # the compose volume mounted there starts out writable.
    cat >"$context/Containerfile" <<'CONTAINERFILE'
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o prometheus -g prometheus /prometheus
USER prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CONTAINERFILE
    snapshot_images "$WORK/images.before-prometheus"
    say "building Prometheus from Debian's package (log: $WORK/prometheus-build.log)"
    local status=0
    podman build --format docker --layers=false --force-rm --pull=never \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" --tag "$PROMETHEUS_IMAGE" "$context" \
        >"$WORK/prometheus-build.log" 2>&1 || status=$?
    track_new_images "$WORK/images.before-prometheus"
    ((status == 0)) || { tail -20 "$WORK/prometheus-build.log" >&2; fail "Prometheus image"; }
}

compose() {
    "$BIN/podman-compose" --project-name "$COMPOSE_PROJECT" \
        --file docker-compose.yml --file "$WORK/compose.override.yml" \
        --profile observability "$@"
}

write_compose_override() {
    cat >"$WORK/compose.override.yml" <<YAML
services:
  classifier:
    image: $IMAGE
    pull_policy: never
  prometheus:
    image: $PROMETHEUS_IMAGE
    pull_policy: never
YAML
}

# How podman applied the compose settings the operations guide promises: enforced ones fail the run,
# the rest are reported (podman-compose does not map every compose key).
check_compose_settings() {
    podman inspect "$1" >"$WORK/classifier.inspect.json"
    "$PY" - "$WORK/classifier.inspect.json" <<'PYTHON'
import json, sys

c = json.load(open(sys.argv[1]))[0]
host, config = c["HostConfig"], c["Config"]
health = config.get("Healthcheck") or {}
rows = [  # (compose setting, applied, honoured, enforced)
    ("read_only: true", host["ReadonlyRootfs"], host["ReadonlyRootfs"] is True, True),
    ("tmpfs /tmp size=512m", host.get("Tmpfs"), "size=512m" in str(host.get("Tmpfs")), True),
    ("cap_drop: [ALL]", c.get("EffectiveCaps"), not c.get("EffectiveCaps"), True),
    ("no-new-privileges", host.get("SecurityOpt"), "no-new-privileges" in str(host.get("SecurityOpt")), True),
    ("memory: 2g", host["Memory"], host["Memory"] == 2 * 1024**3, True),
    ("cpus: 4", host["NanoCpus"] or host["CpuQuota"], host["NanoCpus"] == 4 * 10**9 or host["CpuQuota"] == 400000, True),
    ("pids: 512", host["PidsLimit"], host["PidsLimit"] == 512, True),
    ("init: true", host.get("Init"), host.get("Init") is True, True),
    ("healthcheck", health.get("Test"), "/opt/densenet/healthcheck.py" in str(health.get("Test")), True),
    ("restart: unless-stopped", host["RestartPolicy"]["Name"], host["RestartPolicy"]["Name"] == "unless-stopped", False),
    ("stop_signal: SIGTERM", config.get("StopSignal"), config.get("StopSignal") in (15, "15", "SIGTERM"), False),
    ("stop_grace_period (container)", config.get("StopTimeout"), config.get("StopTimeout") == 40, False),
    ("logging json-file", host["LogConfig"]["Type"], host["LogConfig"]["Type"] in ("json-file", "k8s-file"), False),
]
missing = []
for setting, applied, honoured, enforced in rows:
    print(f"  {'honoured' if honoured else 'NOT honoured':13} {setting:26} applied: {applied}")
    if enforced and not honoured:
        missing.append(setting)
sys.exit(f"FAIL: not applied: {missing}" if missing else 0)
PYTHON
}

check_compose() {
    local port grpc_port prometheus_port cid started code
    COMPOSE_PROJECT="densenet-ci-$RUN_ID"
    port=$(free_port)
    grpc_port=$(free_port)
    prometheus_port=$(free_port)
    write_compose_override
    say "podman-compose up classifier prometheus (project $COMPOSE_PROJECT)"
    # CLASSIFIER_PORT and CLASSIFIER_GRPC_PORT take an address too: the published ports
    # stay on 127.0.0.1.
    CLASSIFIER_PORT="127.0.0.1:$port" CLASSIFIER_GRPC_PORT="127.0.0.1:$grpc_port" \
        PROMETHEUS_PORT=$prometheus_port MODEL_WEIGHTS=random \
        compose up --detach --no-build classifier prometheus >"$WORK/compose-up.log" 2>&1 ||
        { track_compose_project "$COMPOSE_PROJECT"; tail -20 "$WORK/compose-up.log" >&2; fail "compose up"; }
    track_compose_project "$COMPOSE_PROJECT"
    cid=$(podman ps --quiet --no-trunc --filter "label=io.podman.compose.project=$COMPOSE_PROJECT" \
        --filter label=com.docker.compose.service=classifier)
    [[ -n $cid ]] || fail "compose started no classifier container"
    check_service "$cid" "http://127.0.0.1:$port"
    "$PY" scripts/containers/probe.py grpc-ready "127.0.0.1:$grpc_port" 30 ||
        fail "gRPC health through the published gRPC port"
    say "compose settings as podman applied them:"
    check_compose_settings "$cid" || fail "compose settings"
    "$PY" scripts/containers/probe.py target "http://127.0.0.1:$prometheus_port" \
        densenet-classifier 90 || fail "Prometheus does not scrape the classifier"
    started=$SECONDS
    compose --verbose stop >"$WORK/compose-stop.log" 2>&1 || fail "compose stop"
    code=$(podman inspect --format '{{.State.ExitCode}}' "$cid")
    say "compose stop: classifier exited $code after $((SECONDS - started)) s;" \
        "podman-compose ran: $(grep -m1 -oE "stop.{0,12}-t.{0,40}classifier[^ ]*" "$WORK/compose-stop.log")"
    [[ $code == 0 ]] || fail "the classifier exited $code on compose stop"
    compose down >"$WORK/compose-down.log" 2>&1 || fail "compose down"
}
