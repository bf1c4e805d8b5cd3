"""Three real replicas behind a real HAProxy under 16 closed-loop clients (loopback only).

The scenarios of bench/replicas.py, shorter: a rolling restart with zero non-200 answers,
a SIGKILLed replica (only its in-flight requests fail, HAProxy marks it down within its
check interval and sends it nothing more), and a scale-up from 1 to 3 replicas without an
error. The tests run in file order on one fleet; throughput is printed, never asserted.
HAProxy is Debian's package (scripts/install-haproxy.sh, run by `make test`).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.replicas import (
    CHECK_FALL,
    CHECK_INTERVAL_S,
    CHECK_TIMEOUT_S,
    Timeline,
    rolling_restart,
    scale_up,
    sigkill,
    summarize,
)
from bench.replicas_fleet import (
    HAPROXY_CONFIG,
    Fleet,
    haproxy_binary,
    render_config,
    replica_settings,
)
from bench.replicas_load import Load, failures
from tests.images import jpeg
from tests.server import wait_until
from tests.test_containers import _apply_env, compose, get_routes, seconds

REPLICAS = 3
CLIENTS = 16
WINDOW = 150  # answered requests per measurement window


@pytest.fixture(scope="module")
def fleet(tiny_model: Path) -> Iterator[tuple[Fleet, Load, Timeline]]:
    if haproxy_binary() is None:
        message = "haproxy is not installed (scripts/install-haproxy.sh: Debian package haproxy)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    images = [jpeg(320, 240, seed=seed) for seed in range(4)]
    with tempfile.TemporaryDirectory() as workdir:
        fleet = Fleet(tiny_model, REPLICAS, Path(workdir), **replica_settings(1))
        load: Load | None = None
        try:
            for slot in fleet.slots:
                fleet.start_replica(slot)
            for slot in fleet.slots:
                fleet.wait_replica_ready(slot)
            fleet.start_balancer()
            fleet.balancer_ready()
            load = Load(fleet.url, images, clients=CLIENTS).start()
            wait_until(lambda: load.completed_since(0) >= WINDOW, 120, "the first answers")
            yield fleet, load, Timeline()
        finally:
            if load is not None:
                load.stop()
            fleet.close()


def test_the_compose_config_renders_for_loopback(tmp_path: Path) -> None:
    binary = haproxy_binary()
    if binary is None:
        pytest.skip("haproxy is not installed")
    config = tmp_path / "haproxy.cfg"
    config.write_text(render_config(18000, tmp_path / "sock", [18001, 18002]))
    text = config.read_text()
    assert "server replica-1 127.0.0.1:18001" in text
    assert "server replica-2 127.0.0.1:18002" in text
    assert "bind 127.0.0.1:18000" in text
    assert "option httpchk GET /health/ready" in text
    check = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_compose_replicas_profile_runs_this_config_against_real_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = compose()["services"]
    replica, balancer = services["replica"], services["balancer"]
    assert replica["profiles"] == balancer["profiles"] == ["replicas"]
    assert replica["image"] == services["classifier"]["image"]
    settings = _apply_env(monkeypatch, {k: str(v) for k, v in replica["environment"].items()})
    assert settings.resolved_intra_op_threads() == int(
        replica["deploy"]["resources"]["limits"]["cpus"]
    )
    assert seconds(replica["stop_grace_period"]) > settings.shutdown_grace_s
    mounts = dict(str(v).split(":")[:2] for v in balancer["volumes"])
    assert mounts["./docker/haproxy/haproxy.cfg"] == "/usr/local/etc/haproxy/haproxy.cfg"
    config = HAPROXY_CONFIG.read_text()
    (template,) = re.findall(r"server-template \S+ \S+ (\S+):(\d+)", config)
    assert template == ("replica", str(settings.port))
    (check,) = re.findall(r"option httpchk GET (\S+)", config)
    assert check == "/health/ready"
    assert check in get_routes()
    assert balancer["ports"] == ["${BALANCER_PORT:-8080}:8000"]
    assert "bind :8000" in config


def test_rolling_restart_answers_every_request_with_200(
    fleet: tuple[Fleet, Load, Timeline],
) -> None:
    balancer, load, timeline = fleet
    rolling_restart(balancer, timeline)
    wait_until(lambda: load.completed_since(timeline.events[-1][0]) >= WINDOW, 120, "load")
    summary = summarize(list(load.outcomes), timeline)
    print("rolling restart:", summary["rolling_restart"])
    assert [slot.exits for slot in balancer.slots] == [[0]] * REPLICAS
    assert summary["rolling_restart"]["requests"] > 0
    # Every request since the load began, before, during and after the restart.
    assert failures(list(load.outcomes)) == []
    # Every new replica took traffic once back in rotation.
    sessions = {name: int(row["stot"]) for name, row in balancer.stats().items()}
    assert all(count > 0 for count in sessions.values()), sessions


def test_sigkill_fails_only_requests_in_flight_and_leaves_rotation_within_a_check(
    fleet: tuple[Fleet, Load, Timeline],
) -> None:
    balancer, load, timeline = fleet
    sigkill(balancer, load, timeline, after_requests=WINDOW)
    kill = summarize(list(load.outcomes), timeline)["sigkill"]
    print("SIGKILL:", kill)
    # Only requests the killed replica had in flight, or was sent before the balancer's
    # check noticed (a kept-alive connection to it may be reused), fail: at most one per
    # client, and none once it is marked down.
    assert kill["failed_started_after_down"] == 0
    assert kill["failed"] + kill["failed_started_after_kill"] <= CLIENTS
    assert kill["down_after_s"] <= CHECK_INTERVAL_S * CHECK_FALL + CHECK_TIMEOUT_S
    # Nothing more was sent to it once marked down.
    assert kill["sessions_after"] == kill["sessions_at_down"]


def test_scale_up_from_one_replica_adds_capacity_without_errors(
    fleet: tuple[Fleet, Load, Timeline],
) -> None:
    balancer, load, timeline = fleet
    failed_before = len(failures(list(load.outcomes)))
    scale_up(balancer, load, timeline, WINDOW)
    summary = summarize(list(load.outcomes), timeline)
    print("scale-up:", summary["scale_up"])
    assert len(failures(list(load.outcomes))) == failed_before
    many_began = timeline.figures["scale_up"]["many"][0]
    assert load.completed_since(many_began) >= WINDOW
    assert summary["scale_up"]["images_per_s_1"] > 0
