"""`python -m bench.protocols --quick` end to end on the tiny DenseNet, so that it never rots:
perf_analyzer over gRPC and HTTP on both inputs and /classify on one server, every row
measured with its server and engine CPU per image, and the report's targets evaluated
(`make pytest` installs perf_analyzer with bench/perf_analyzer/install.sh; outside CI the
test skips when that was not possible). It asserts nothing about timings."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
TOOL = ROOT / ".perf-analyzer" / "perf_analyzer"
ROWS = {(p, k, c) for p in ("grpc", "http-v2") for k in ("input", "image") for c in (1, 16)}
ROWS |= {("classify", "image", c) for c in (1, 16)}
NUMBERS = (
    "throughput",
    "p50_ms",
    "p99_ms",
    "server_cpu_ms_per_image",
    "engine_cpu_ms_per_image",
    "front_cpu_ms_per_image",
)


@pytest.mark.skipif(
    not TOOL.exists(), reason=f"no perf_analyzer at {TOOL} (bench/perf_analyzer/install.sh)"
)
def test_protocols_study_quick_run(tiny_model: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "bench.protocols", "--quick", "--model", str(tiny_model)]
    command += ["--name", "smoke", "--results-dir", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    result = json.loads((tmp_path / "smoke.json").read_text())
    summary = {(s["protocol"], s["input"], s["clients"]): s for s in result["summary"]}
    assert set(summary) == ROWS
    failed = {key: s["errors"] for key, s in summary.items() if s["errors"]}
    assert not failed, f"rows that failed: {failed}"
    for key, entry in summary.items():
        assert entry["rounds"] == 2
        for number in NUMBERS:
            assert (entry[number] or 0) > 0, (key, number, entry)
    # the second round runs the same configurations in reverse order
    order = [(r["protocol"], r["input"], r["clients"]) for r in result["rows"]]
    assert order[len(ROWS) :] == order[: len(ROWS)][::-1]
    assert "binary tensor data" in result["encodings"]["http-v2 input"]
    assert "raw_input_contents" in result["encodings"]["grpc input"]
    assert result["engine_alone_cpu_ms_per_image"]

    report = (tmp_path / "smoke.md").read_text()
    for protocol, kind, clients in ROWS:
        assert f"| {protocol} | {kind} | {clients} | " in report
    verdicts = [line for line in report.splitlines() if line.startswith("- (")]
    assert len(verdicts) == len(result["targets"]) == 7
    assert all(re.search(r": \d+\.\d\dx, (met|missed by \d+%)", line) for line in verdicts)
