"""`python -m bench run --precisions fp32,bf16` on the tiny DenseNet: both precisions are
measured side by side (engine ceiling and service) with CPU time per image. Asserts the
results' shape, never their speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.precision import detect_hardware

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not detect_hardware("bf16").native_bf16, reason="this CPU has no native bf16"
    ),
]


def test_fp32_and_bf16_side_by_side(tmp_path: Path) -> None:
    command = ["-m", "bench", "run", "--smoke", "--name", "p", "--results-dir", str(tmp_path)]
    command += ["--precisions", "fp32,bf16", "--concurrencies", "1,2"]
    done = subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "p.json").read_text())
    engines = result["engines"]
    assert {p: (e["precision"], e["runtime"]) for p, e in engines.items()} == {
        "fp32": ("fp32", "onnxruntime"),
        "bf16": ("bf16", "openvino"),
    }
    assert all(e["cpu_ms_per_image"] > 0 and e["throughput_after"] > 0 for e in engines.values())
    assert set(result["modes"]) == {"service fp32", "service bf16"}
    for name, mode in result["modes"].items():
        assert mode["env"]["DENSENET_PRECISION"] == name.split()[1]
        assert [s["concurrency"] for s in mode["steps"]] == [1, 2]
        assert all(s["server_cpu_ms_per_image"] > 0 for s in mode["steps"])
    probes = [m["probe"]["top5"] for m in result["modes"].values()]
    assert probes[0] != probes[1]  # bf16 is really computed differently...
    assert probes[0][0]["class_index"] == probes[1][0]["class_index"]  # ...and agrees
    table = (tmp_path / "p.md").read_text()
    assert "## Precisions side by side" in table
    assert "| bf16 | openvino |" in table
