"""The benchmark harness end to end on a tiny DenseNet, so that it never rots.

Runs `python -m bench run --smoke` as a user would (real servers, real load generator) and
checks that the results are complete and well-formed. It asserts nothing about timings:
this machine is shared and noisy, and benchmarks are not timed tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODES = ("service", "service batch=1", "pytorch baseline")
LATENCY_KEYS = {"p50", "p95", "p99", "max", "mean"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    results_dir = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "run",
            "--smoke",
            "--name",
            "smoke",
            "--results-dir",
            str(results_dir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return results_dir, done.stdout


@pytest.fixture(scope="module")
def result(smoke_run: tuple[Path, str]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((smoke_run[0] / "smoke.json").read_text())
    return loaded


def test_prints_progress_per_step(smoke_run: tuple[Path, str]) -> None:
    lines = smoke_run[1].splitlines()
    assert any(line.startswith("[1/") for line in lines)
    assert any("pytorch baseline: web c=4:" in line for line in lines)


def test_writes_json_markdown_and_png(smoke_run: tuple[Path, str]) -> None:
    results_dir = smoke_run[0]
    assert (results_dir / "smoke.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (results_dir / "smoke.md").read_text()
    assert "| mode | images | concurrency | img/s |" in table
    for mode in MODES:
        assert f"| {mode} | web |" in table


def test_engine_ceiling_covers_every_batch_size(result: dict[str, Any]) -> None:
    engine = result["engine"]
    assert [b["batch_size"] for b in engine["batch_sizes"]] == list(
        result["plan"]["engine_batch_sizes"]
    )
    assert engine["throughput_before"] == max(b["throughput"] for b in engine["batch_sizes"])
    assert engine["throughput_after"] > 0
    mean = (engine["throughput_before"] + engine["throughput_after"]) / 2
    assert engine["throughput"] == pytest.approx(mean)
    assert engine["batch1_latency_ms"]["p50"] > 0


def test_every_mode_ran_every_step_and_got_answers(result: dict[str, Any]) -> None:
    assert set(MODES) <= set(result["modes"])
    for name, mode in result["modes"].items():
        assert mode["cold_start_s"] > 0, name
        assert mode["steps"], name
        for step in mode["steps"]:
            assert step["server_alive"], (name, step)
            assert step["status_counts"].get("200", 0) > 0, (name, step["status_counts"])
            assert step["peak_rss_mb"] > 0
            latency = step["accepted_latency_ms"] if step["overload"] else step["latency_ms"]
            assert set(latency) == LATENCY_KEYS


def test_service_steps_carry_metrics_deltas(result: dict[str, Any]) -> None:
    for step in result["modes"]["service"]["steps"]:
        if not step["overload"]:
            assert step["metrics"]["images_classified"] > 0
            assert step["metrics"]["mean_batch_size"] >= 1
    batch1 = result["modes"]["service batch=1"]["steps"]
    assert all(s["metrics"]["mean_batch_size"] == 1 for s in batch1)


def test_baseline_serves_the_same_model(result: dict[str, Any]) -> None:
    service = result["modes"]["service"]["probe"]["top5"]
    baseline = result["modes"]["pytorch baseline"]["probe"]["top5"]
    assert [p["class_index"] for p in service] == [p["class_index"] for p in baseline]
    for ours, theirs in zip(service, baseline, strict=True):
        assert ours["probability"] == pytest.approx(theirs["probability"], abs=1e-4)


def test_overload_and_targets_are_recorded(result: dict[str, Any]) -> None:
    overload = [s for s in result["modes"]["service"]["steps"] if s["overload"]]
    assert len(overload) == 1
    assert {"recovered_after_s", "probes"} <= set(overload[0]["recovery"])
    assert {t["target"] for t in result["targets"]} == {1, 2, 3, 4, 5, 6}
    assert all(t["met"] in (True, False, None) for t in result["targets"])
    assert set(result["photos"]["phone"]["dimensions"]) <= {"4000x3000", "3000x4000"}
