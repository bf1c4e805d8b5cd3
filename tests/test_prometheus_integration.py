"""A real Prometheus scrapes a real service with the project's scrape config and rules.

The service runs as `python -m app` on a loopback port, as in the image; Prometheus runs
docker/prometheus/prometheus.yml with only the target and intervals changed. Needs the
`prometheus` and `promtool` binaries (scripts/install-prometheus.sh): without them the
tests skip, except under CI, where they fail.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from tests.images import encode, photo

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "docker" / "prometheus"
DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "densenet-classifier.json"
JOB = "densenet-classifier"
P99 = (
    "histogram_quantile(0.99, sum by (le) "
    "(rate(classifier_http_request_duration_seconds_bucket[1m])))"
)
SHUTDOWN_GRACE_S = 5.0
T = TypeVar("T")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def binaries() -> dict[str, str]:
    found = {name: shutil.which(name) for name in ("prometheus", "promtool")}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        message = f"{', '.join(missing)} not on PATH; scripts/install-prometheus.sh installs them"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return {name: path for name, path in found.items() if path is not None}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process with output in `log`; killed on exit if it is still running."""
    with log.open("wb") as out:
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float, log: Path) -> T:
    """Poll `check` until it returns something; fail with the process log otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result is not None:
            return result
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}; log:\n{log.read_text(errors='replace')[-4000:]}")


def probe(port: int) -> int:
    """docker/healthcheck.py as the container runs it: exit status 0 means ready."""
    env = {**os.environ, "DENSENET_PORT": str(port)}
    args = [sys.executable, str(ROOT / "docker" / "healthcheck.py")]
    return subprocess.run(args, env=env, capture_output=True, timeout=10, check=False).returncode


@pytest.fixture(scope="module")
def service(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """`python -m app` on a free loopback port, ready; on teardown it must drain and exit 0."""
    port = free_port()
    env = {
        **os.environ,
        "DENSENET_MODEL_PATH": str(tiny_model),
        "DENSENET_HOST": "127.0.0.1",
        "DENSENET_PORT": str(port),
        "DENSENET_GRPC_PORT": "0",  # HTTP only: no second port to collide
        "DENSENET_INTRA_OP_THREADS": "1",
        "DENSENET_PREPROCESS_THREADS": "2",
        "DENSENET_SHUTDOWN_GRACE_S": str(SHUTDOWN_GRACE_S),
    }
    log = tmp_path_factory.mktemp("service") / "service.log"
    with running([sys.executable, "-m", "app"], log, env) as process:
        wait_for("the readiness probe", lambda: True if probe(port) == 0 else None, 60, log)
        yield port
        process.send_signal(signal.SIGTERM)  # what `docker stop` sends (STOPSIGNAL)
        assert process.wait(timeout=SHUTDOWN_GRACE_S + 10) == 0, log.read_text()


def prometheus_config(service_port: int) -> dict[str, Any]:
    """docker/prometheus/prometheus.yml with the job aimed at the local service, scraped fast."""
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == JOB]
    job["scrape_timeout"] = "1s"
    labels = job["static_configs"][0].get("labels", {})
    job["static_configs"] = [{"targets": [f"127.0.0.1:{service_port}"], "labels": labels}]
    return config


@pytest.fixture(scope="module")
def prometheus(
    binaries: dict[str, str], service: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    """Prometheus on a free loopback port with the project's job and rules; its API client."""
    workdir = tmp_path_factory.mktemp("prometheus")
    config = prometheus_config(service)
    for rule_file in config.get("rule_files", []):
        shutil.copy(PROMETHEUS_DIR / rule_file, workdir / rule_file)
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    check = subprocess.run(
        [binaries["promtool"], "check", "config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    port = free_port()
    args = [
        binaries["prometheus"],
        f"--config.file={config_path}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    log = workdir / "prometheus.log"
    with running(args, log), httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:

        def started() -> bool | None:
            # /-/ready answers 503 while the storage starts: "not yet", like no answer.
            try:
                return True if client.get("/-/ready").status_code == 200 else None
            except httpx.TransportError:
                return None

        def scraped() -> bool | None:
            return True if query(client, f'up{{job="{JOB}"}} == 1') else None

        wait_for("Prometheus to start", started, 120, log)
        wait_for("Prometheus to scrape the service", scraped, 60, log)
        yield client


def query(client: httpx.Client, expr: str) -> list[dict[str, Any]]:
    response = client.get("/api/v1/query", params={"query": expr})
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def finite_values(result: list[dict[str, Any]]) -> list[float] | None:
    values = [float(series["value"][1]) for series in result]
    return values if values and all(math.isfinite(v) for v in values) else None


@pytest.fixture(scope="module")
def traffic(service: int) -> Iterator[Callable[[], None]]:
    """Sends a round of requests: good images to both classify routes, and one bad image."""
    image = encode(photo(96, 80), "PNG")
    with httpx.Client(base_url=f"http://127.0.0.1:{service}", timeout=10) as client:

        def send_round() -> None:
            for _ in range(4):
                ok = client.post("/classify", content=image, headers={"content-type": "image/png"})
                assert ok.status_code == 200, ok.text
            files = [("files", (f"{i}.png", image, "image/png")) for i in range(3)]
            assert client.post("/classify/batch", files=files).status_code == 200
            bad = client.post(
                "/classify", content=b"not a png", headers={"content-type": "image/png"}
            )
            assert bad.status_code == 400, bad.text

        yield send_round


def evaluate_under_traffic(
    client: httpx.Client, send_round: Callable[[], None], exprs: list[str]
) -> dict[str, list[float] | None]:
    """Each expression's values once all are finite, sending requests between scrapes
    (rate() needs the counters to grow across two scrapes); after 30 s, what there is."""
    deadline = time.monotonic() + 30
    while True:
        send_round()
        values = {expr: finite_values(query(client, expr)) for expr in exprs}
        if all(values.values()) or time.monotonic() > deadline:
            return values
        time.sleep(0.5)


def test_p99_latency_reads_back_through_prometheus(
    prometheus: httpx.Client, traffic: Callable[[], None]
) -> None:
    values = evaluate_under_traffic(prometheus, traffic, [P99])[P99]
    assert values is not None, "no finite p99 from Prometheus"
    (p99,) = values
    assert 0 < p99 < 10  # seconds; a tiny model on loopback, within the request timeout


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [
        target["expr"].replace("$__rate_interval", "1m").replace("$instance", ".*")
        for panel in panels
        for target in panel["targets"]
    ]


def test_every_dashboard_query_returns_data(
    prometheus: httpx.Client, traffic: Callable[[], None]
) -> None:
    values = evaluate_under_traffic(prometheus, traffic, dashboard_exprs())
    empty = [expr for expr, value in values.items() if value is None]
    assert not empty, "dashboard queries without finite data:\n" + "\n".join(empty)


def test_alert_rules_load_and_evaluate(prometheus: httpx.Client) -> None:
    rule_files = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())["rule_files"]
    names = {
        rule["alert"]
        for rule_file in rule_files
        for group in yaml.safe_load((PROMETHEUS_DIR / rule_file).read_text())["groups"]
        for rule in group["rules"]
    }

    def evaluated() -> dict[str, str] | None:
        groups = prometheus.get("/api/v1/rules").json()["data"]["groups"]
        health = {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}
        return health if health and "unknown" not in health.values() else None

    deadline = time.monotonic() + 30
    while (health := evaluated()) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert health == dict.fromkeys(names, "ok")
    # A ready service under light load has no alert even pending (the `for:` is minutes).
    assert query(prometheus, "ALERTS") == []


def test_healthcheck_probe_fails_without_a_ready_service() -> None:
    assert probe(free_port()) == 1
