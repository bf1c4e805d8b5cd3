"""Drift checks between the container files and the service, with no Docker engine.

The Dockerfile, docker-compose.yml and docker/ name settings, routes, ports and metrics
of app/; these tests fail when either side changes without the other. hadolint and the
Compose Specification schema run in scripts/check-containers.sh (`make lint`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from app.config import Settings
from app.metrics import Metrics
from app.web.app import create_app

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKER = ROOT / "docker"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "densenet-classifier.json"
PROMETHEUS_CONFIG = DOCKER / "prometheus" / "prometheus.yml"
RUNTIME_STAGES = ("cpu", "gpu")
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 (a container must listen beyond its loopback)
# Series Prometheus itself adds to every scrape, not the service's.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


# --- readers ------------------------------------------------------------------------


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """Instructions (KEYWORD, arguments) per named stage, line continuations joined;
    stage "" holds the global ARGs before the first FROM."""
    current: list[tuple[str, str]] = []
    stages = {"": current}
    logical = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#") or not line:
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        keyword, _, args = (logical + line).partition(" ")
        logical = ""
        if keyword.upper() == "FROM":
            current = []
            stages[args.split()[-1]] = current
        current.append((keyword.upper(), args.strip()))
    return stages


def build_arg_defaults() -> dict[str, str]:
    return {
        name: value
        for stage in dockerfile_stages().values()
        for keyword, args in stage
        if keyword == "ARG" and "=" in args
        for name, _, value in [args.partition("=")]
    }


def instructions(stage: str, keyword: str) -> list[str]:
    return [args for kw, args in dockerfile_stages()[stage] if kw == keyword]


def dockerfile_env(stage: str) -> dict[str, str]:
    """ENV of a stage, with ${ARG} references replaced by the ARG defaults."""
    defaults = build_arg_defaults()
    env: dict[str, str] = {}
    for args in instructions(stage, "ENV"):
        for pair in shlex.split(args):
            name, _, value = pair.partition("=")
            env[name] = re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m[1], m[0]), value)
    return env


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def classifier_services() -> dict[str, dict[str, Any]]:
    """The compose services built from this repository's Dockerfile."""
    return {name: svc for name, svc in compose()["services"].items() if "build" in svc}


def published(mapping: object) -> tuple[str, int, int]:
    """A compose port mapping "[IP:]${VARIABLE:-HOST}:CONTAINER" as (VARIABLE, HOST,
    CONTAINER): every published port takes its host side from a variable, with a default."""
    host, _, container = str(mapping).rpartition(":")
    found = re.fullmatch(r"(?:[\d.]+:)?\$\{(\w+):-(\d+)\}", host)
    assert found, mapping
    return found[1], int(found[2]), int(container)


def load_probe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", DOCKER / "healthcheck.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def get_routes() -> set[str]:
    """Paths the service answers GET on, from its OpenAPI document."""
    paths: dict[str, dict[str, Any]] = create_app(Settings()).openapi()["paths"]
    return {path for path, operations in paths.items() if "get" in operations}


def seconds(duration: str) -> float:
    """A compose duration such as '40s' or '1m30s'."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration != "", duration
    return sum(float(n) * units[u] for n, u in parts)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, labels and keywords removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # string literals
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)  # label matchers, ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    keywords = {"by", "without", "bool", "and", "or", "unless", "offset", "inf", "nan"}
    names = set()
    for token in re.finditer(r"\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|[A-Za-z_:][\w:]*", expr):
        word = token[0]
        is_call = expr[token.end() :].lstrip().startswith("(")
        if not (word[0].isdigit() or is_call or word.lower() in keywords):
            names.add(word)
    return names


def exposed_series_names() -> set[str]:
    """Series names the service's registry writes to /metrics, suffixes included."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    return {
        family.name + suffix
        for family in Metrics().registry.collect()
        for suffix in suffixes[family.type]
    }


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def rule_exprs() -> list[str]:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    return [
        rule["expr"]
        for rule_file in config.get("rule_files", [])
        for group in yaml.safe_load((PROMETHEUS_CONFIG.parent / rule_file).read_text())["groups"]
        for rule in group["rules"]
    ]


# --- settings -----------------------------------------------------------------------


def _apply_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    unknown = {
        name for name in env if name.removeprefix("DENSENET_").lower() not in Settings.model_fields
    }
    assert not unknown, f"not settings in app/config.py: {sorted(unknown)}"
    for name in [n for n in os.environ if n.startswith("DENSENET_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()  # raises if a value does not parse


@pytest.mark.parametrize("service", sorted(classifier_services()))
def test_compose_environment_is_real_settings(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {k: str(v) for k, v in classifier_services()[service]["environment"].items()}
    assert all(name.startswith("DENSENET_") for name in env), sorted(env)
    settings = _apply_env(monkeypatch, env)
    assert settings.host == ALL_INTERFACES


@pytest.mark.parametrize("stage", RUNTIME_STAGES)
def test_dockerfile_environment_is_real_settings(
    stage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {k: v for k, v in dockerfile_env(stage).items() if k.startswith("DENSENET_")}
    settings = _apply_env(monkeypatch, env)
    assert settings.host == ALL_INTERFACES
    assert str(settings.model_path).startswith("/models/")


# --- image ---------------------------------------------------------------------------


@pytest.mark.parametrize("stage", RUNTIME_STAGES)
def test_entrypoint_runs_the_service_module(stage: str) -> None:
    (entrypoint,) = instructions(stage, "ENTRYPOINT")
    command = json.loads(entrypoint)  # exec form, so SIGTERM reaches the server
    module = command[command.index("-m") + 1]
    assert (ROOT / module.replace(".", "/") / "__main__.py").is_file()
    assert instructions(stage, "STOPSIGNAL") == ["SIGTERM"]
    *_, user = instructions(stage, "USER")
    assert not user.startswith(("0", "root")), user


@pytest.mark.parametrize("stage", RUNTIME_STAGES)
def test_runtime_images_take_only_the_model_from_the_export_stage(stage: str) -> None:
    runs = " ".join(instructions(stage, "RUN"))
    assert "torch" not in runs
    from_export = [a for a in instructions(stage, "COPY") if "--from=export" in a]
    assert from_export == ["--from=export /models/ /models/"]
    model_path = dockerfile_env(stage)["DENSENET_MODEL_PATH"]
    (export_run,) = [a for a in instructions("export", "RUN") if "model_export export" in a]
    output = export_run.split("--output")[1].split()[0].strip('"')
    assert output.replace("${MODEL_ARCH}", build_arg_defaults()["MODEL_ARCH"]) == model_path


def dockerignore_admits(path: str) -> bool:
    """Whether the build context keeps `path` (Docker's rules: last match wins, a
    pattern that matches a directory also matches everything in it)."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    admitted = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").rstrip("/")
        regex = re.escape(glob).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\?", "[^/]").replace(r"\[", "[").replace(r"\]", "]")
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            admitted = negated
    return admitted


def test_dockerignore_keeps_the_context_to_what_the_images_copy() -> None:
    sources = [
        source
        for stage in dockerfile_stages()
        for args in instructions(stage, "COPY")
        if "--from=" not in args
        for source in args.split()[:-1]
        if not source.startswith("--")
    ]
    assert "docker/healthcheck.py" in sources
    for source in sources:
        assert dockerignore_admits(source.rstrip("/")), source
        if source.endswith("/"):
            assert dockerignore_admits(f"{source}x.py"), source
    for kept_out in (
        ".venv/bin/python",
        "models/densenet121.onnx",
        "tests/test_app.py",
        ".git/HEAD",
        "app/__pycache__/main.cpython-312.pyc",
        "bench/run.py",
    ):
        assert not dockerignore_admits(kept_out), kept_out


# --- health, ports, shutdown ---------------------------------------------------------


def test_healthchecks_probe_the_readiness_route() -> None:
    probe = load_probe()
    assert probe.READY_PATH in get_routes()
    assert probe.READY_PATH == "/health/ready"
    assert int(probe.DEFAULT_PORT) == Settings.model_fields["port"].default
    commands = []
    for stage in RUNTIME_STAGES:
        (healthcheck,) = instructions(stage, "HEALTHCHECK")
        command = json.loads(healthcheck.split(" CMD ", 1)[1])
        assert f"docker/healthcheck.py {command[-1]}" in instructions(stage, "COPY")
        commands.append(["CMD", *command])
    for service in classifier_services().values():
        check = service["healthcheck"]
        assert check["test"] in commands
        assert seconds(check["timeout"]) > probe.TIMEOUT_S  # the probe reports, not killed


def test_ports_agree_between_image_compose_and_prometheus() -> None:
    services = classifier_services()
    ports = {int(dockerfile_env(stage)["DENSENET_PORT"]) for stage in RUNTIME_STAGES}
    ports |= {int(svc["environment"]["DENSENET_PORT"]) for svc in services.values()}
    (job,) = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    ports |= {int(target.rsplit(":", 1)[1]) for target in targets}
    assert len(ports) == 1, ports
    assert {target.rsplit(":", 1)[0] for target in targets} == set(services)
    assert job["metrics_path"] in get_routes()
    # The gRPC front: one port everywhere too, never the HTTP one, and not turned off (0).
    grpc = {int(dockerfile_env(stage)["DENSENET_GRPC_PORT"]) for stage in RUNTIME_STAGES}
    grpc |= {int(svc["environment"]["DENSENET_GRPC_PORT"]) for svc in services.values()}
    assert len(grpc) == 1, grpc
    assert grpc.isdisjoint(ports | {0}), (grpc, ports)
    both = ports | grpc
    for stage in RUNTIME_STAGES:
        exposed = [int(p) for args in instructions(stage, "EXPOSE") for p in args.split()]
        assert sorted(exposed) == sorted(both), (stage, exposed)
    for name, svc in services.items():
        containers = [published(mapping)[2] for mapping in svc["ports"]]
        assert sorted(containers) == sorted(both), (name, svc["ports"])


def test_published_host_ports_are_distinct_across_every_profile() -> None:
    """`docker compose --profile gpu --profile observability ... up` binds every default
    host port at once: no two mappings may share one, nor the variable that moves it."""
    mappings = [
        (name, published(mapping))
        for name, svc in compose()["services"].items()
        for mapping in svc.get("ports", [])
    ]
    assert len(mappings) > 2 * len(classifier_services()), mappings
    hosts = [default for _, (_, default, _) in mappings]
    variables = [variable for _, (variable, _, _) in mappings]
    assert len(set(hosts)) == len(hosts), mappings
    assert len(set(variables)) == len(variables), mappings
    grpc = int(dockerfile_env("cpu")["DENSENET_GRPC_PORT"])
    for name in classifier_services():
        (variable,) = [v for n, (v, _, c) in mappings if n == name and c == grpc]
        assert "GRPC" in variable, (name, variable)


@pytest.mark.parametrize("service", sorted(classifier_services()))
def test_compose_lets_the_service_drain_and_run_read_only(service: str) -> None:
    svc = classifier_services()[service]
    grace = float(
        svc["environment"].get(
            "DENSENET_SHUTDOWN_GRACE_S", Settings.model_fields["shutdown_grace_s"].default
        )
    )
    assert svc["stop_signal"] == "SIGTERM"
    assert seconds(svc["stop_grace_period"]) > grace
    assert svc["read_only"] is True
    [tmp] = [str(mount) for mount in svc["tmpfs"] if str(mount).split(":")[0] == "/tmp"]
    # Uploads spool to /tmp; together they hold at most the upload budget, so it fits.
    size = re.search(r"size=(\d+)m", tmp)
    assert size, tmp
    budget = int(
        svc["environment"].get(
            "DENSENET_MAX_INFLIGHT_UPLOAD_BYTES",
            Settings.model_fields["max_inflight_upload_bytes"].default,
        )
    )
    assert budget <= int(size[1]) * 1024 * 1024
    assert svc["restart"] in ("always", "unless-stopped", "on-failure")
    assert {"cpus", "memory"} <= set(svc["deploy"]["resources"]["limits"])


def test_gpu_service_reserves_an_nvidia_device_and_uses_cuda() -> None:
    svc = compose()["services"]["classifier-gpu"]
    assert svc["profiles"] == ["gpu"]
    assert svc["build"]["target"] == "gpu"
    (device,) = svc["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert "gpu" in device["capabilities"]
    providers = svc["environment"]["DENSENET_PROVIDERS"].split(",")
    assert providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]


# --- observability --------------------------------------------------------------------


def test_metric_names_are_found_in_promql() -> None:
    expr = 'histogram_quantile(0.99, sum by (le) (rate(a_bucket{x="y"}[5m]))) / 1e-9 > b'
    assert metric_names(expr) == {"a_bucket", "b"}


@pytest.mark.parametrize(
    "exprs", [dashboard_exprs, rule_exprs], ids=["grafana-dashboard", "prometheus-rules"]
)
def test_queried_metrics_exist(exprs: Any) -> None:
    used = {name for expr in exprs() for name in metric_names(expr)}
    assert used, "no expressions found"
    assert used - PROMETHEUS_SERIES <= exposed_series_names(), used - exposed_series_names()


def test_grafana_provisioning_matches_compose_mounts() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(str(v).split(":")[:2] for v in grafana["volumes"])
    provisioning = DOCKER / "grafana" / "provisioning"
    (datasource,) = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    (provider,) = yaml.safe_load((provisioning / "dashboards/dashboards.yml").read_text())[
        "providers"
    ]
    assert mounts["./docker/grafana/dashboards"] == provider["options"]["path"]
    assert datasource["url"] == "http://prometheus:9090"
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {datasource["uid"]}
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for needed in ("requests/s", "error rate", "p99", "queue depth", "batch size", "inference"):
        assert needed in titles, needed


def test_prometheus_mount_holds_the_config_it_is_started_with() -> None:
    prometheus = compose()["services"]["prometheus"]
    mounts = dict(str(v).split(":")[:2] for v in prometheus["volumes"])
    config = next(a.split("=", 1)[1] for a in prometheus["command"] if "--config.file" in a)
    assert Path(mounts["./docker/prometheus"]) / PROMETHEUS_CONFIG.name == Path(config)
