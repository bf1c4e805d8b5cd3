"""The model-repository benchmark end to end on two tiny DenseNets, so that it never rots.

Runs `python -m bench.repository --smoke` (two exported tiny models in one repository, real
servers, a real load generator spreading clients over both) and `bench.memory_options` on
that repository, then checks that the results are complete. Nothing about timings is
asserted: benchmarks are not timed tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["tiny-a", "tiny-b"]

pytestmark = pytest.mark.slow


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("bench")
    _run(
        "bench.repository",
        "--smoke",
        "--no-memory-options",
        "--name",
        "repo",
        "--results-dir",
        str(directory),
    )
    return directory


@pytest.fixture(scope="module")
def result(run_dir: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((run_dir / "repo.json").read_text())
    return loaded


def test_both_servers_served_every_step(result: dict[str, Any]) -> None:
    assert result["servers"]["single"]["models"] == ["tiny-a"]
    assert result["servers"]["all"]["models"] == MODELS
    for server in result["servers"].values():
        assert server["idle"]["rss_mb"] > 0
        for step in server["steps"]:
            assert step["server_alive"]
            assert step["peak_rss_mb"] > 0
            for model, part in step["per_model"].items():
                assert part["status_counts"].get("200", 0) > 0, (model, part)


def test_mixed_step_spreads_clients_and_counts_batches_per_model(result: dict[str, Any]) -> None:
    mixed = result["servers"]["all"]["steps"][-1]
    assert mixed["models"] == MODELS
    assert [p["clients"] for p in mixed["per_model"].values()] == [2, 2]
    per_model = {m: p["metrics"] for m, p in mixed["per_model"].items()}
    assert set(per_model) == set(MODELS)
    for metrics in per_model.values():
        assert metrics["images_classified"] > 0
        assert 1 <= metrics["mean_batch_size"] <= 8
    total = sum(m["images_classified"] for m in per_model.values())
    assert total == mixed["metrics"]["images_classified"]


def test_alone_steps_reach_only_their_model(result: dict[str, Any]) -> None:
    for step in result["servers"]["all"]["steps"][:-1]:
        (model,) = step["models"]
        assert set(step["per_model"]) == {model}
        assert step["per_model"][model]["metrics"]["images_classified"] > 0
        others = [m for m in MODELS if m != model]
        assert all(m not in step["per_model"] for m in others)


def test_writes_markdown_and_png(run_dir: Path) -> None:
    assert (run_dir / "repo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (run_dir / "repo.md").read_text()
    assert "| all | mixed | **all** | 4 |" in table
    assert "Mixed / single-model img/s" in table


def test_memory_options_measure_each_variant(run_dir: Path) -> None:
    repository = run_dir / "tmp" / "repo" / "models"
    done = _run(
        "bench.memory_options",
        "--repository",
        str(repository),
        "--variants",
        "engine,shared-arena-no-pattern",
        "--rounds",
        "1",
    )
    measured = json.loads(done.stdout)
    assert set(measured["models"]) == set(MODELS)
    assert [v["variant"] for v in measured["variants"]] == ["engine", "shared-arena-no-pattern"]
    for variant in measured["variants"]:
        assert 0 < variant["rss_start_mb"] <= variant["rss_loaded_mb"] <= variant["peak_mb"]
        assert variant["throughput"] > 0
        assert len(variant["batch_ms"]) == len(MODELS)
