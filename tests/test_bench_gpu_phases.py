"""bench/gpu_phases.py: how `python -m bench gpu` keeps what it measured when a step hangs,
a phase breaks, the budget runs out, or SIGTERM/SIGINT arrives. No GPU needed: the phases
here are small Python steps, the signals real ones sent to a real process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from bench import gpu_phases
from bench.gpu_phases import Budget, BudgetSpent, Phases, StepFailed, run_python

ROOT = Path(__file__).resolve().parent.parent


def test_a_step_that_hangs_is_killed_at_its_timeout() -> None:
    assert run_python(["-c", "print('ok')"], 30) == "ok\n"
    started = time.monotonic()
    with pytest.raises(StepFailed, match=r"^timed out after 1 s$"):
        run_python(["-c", "import time; time.sleep(60)"], 1)
    assert time.monotonic() - started < 15
    with pytest.raises(StepFailed, match=r"^exit 3: went wrong$"):
        run_python(["-c", "import sys; print('went wrong', file=sys.stderr); sys.exit(3)"], 30)


def test_a_failing_step_names_its_error() -> None:
    with pytest.raises(StepFailed, match=r"^exit 1: .*ValueError: went wrong$"):
        run_python(["-c", "raise ValueError('went wrong')"], 30)


def test_each_phase_is_recorded_and_saved_and_the_rest_go_on() -> None:
    result: dict[str, Any] = {}
    saved: list[dict[str, str]] = []
    phases = Phases(
        ["good", "some steps failed", "broken", "spent", "after"],
        result,
        lambda _plot: saved.append({n: p["status"] for n, p in result["phases"].items()}),
        Budget(0),
    )
    assert result["partial"]
    assert len(result["missing"]) == 5  # before anything ran

    def broken() -> list[str]:
        raise ValueError("no model")

    def spent() -> list[str]:
        Budget(1.0).timeout(30)  # less than the margin left: spent
        return []

    phases.run("good", list)
    phases.run("some steps failed", lambda: ["engine fp16 HEURISTIC: timed out after 90 s"])
    phases.run("broken", broken)
    phases.run("spent", spent)
    phases.run("after", list)
    statuses = {name: p["status"] for name, p in result["phases"].items()}
    assert statuses == {
        "good": "done",
        "some steps failed": "incomplete",
        "broken": "failed",
        "spent": "timed out",
        "after": "not run (the budget was spent)",
    }
    assert result["phases"]["broken"]["error"] == "ValueError: no model"
    assert result["phases"]["some steps failed"]["failed_steps"] == [
        "engine fp16 HEURISTIC: timed out after 90 s"
    ]
    assert result["partial"] is True
    assert result["missing"] == ["some steps failed", "broken", "spent", "after"]
    assert len(saved) == 5  # after every phase, the one left out too
    assert saved[0] == {
        **statuses,
        "some steps failed": "not run",
        "broken": "not run",
        "spent": "not run",
        "after": "not run",
    }
    assert saved[-1] == statuses


def test_budget_timeouts_stop_short_of_its_end() -> None:
    assert Budget(0).timeout(90) == 90  # no budget
    assert 20 < Budget(30).timeout(90) <= 30 - gpu_phases.MARGIN_S
    with pytest.raises(BudgetSpent):
        Budget(gpu_phases.MARGIN_S).timeout(90)


SCRIPT = """
import json, sys, time
from pathlib import Path
from bench import gpu_phases
from bench.gpu_phases import Budget, Phases, Stopped, run_python

gpu_phases.MARGIN_S = 0.1
report = Path(sys.argv[1])
result = {}

def save(_plot):
    report.write_text(json.dumps(result))

def measured():
    result["engines"] = ["fp32"]
    return []

def hangs():
    if sys.argv[2] == "child":
        run_python(["-c", "import time; time.sleep(60)"], 120)
    time.sleep(60)
    return []

try:
    with Phases(["measured", "hangs", "after"], result, save, Budget(float(sys.argv[3]))) as p:
        p.run("measured", measured)
        p.run("hangs", hangs)
        p.run("after", list)
except Stopped as exc:
    sys.exit(exc.exit_code)
except gpu_phases.BudgetSpent:
    pass
"""


def start(tmp_path: Path, where: str, budget_s: float) -> tuple[subprocess.Popen[str], Path]:
    script = tmp_path / "phases.py"
    script.write_text(textwrap.dedent(SCRIPT))
    report = tmp_path / "report.json"
    process = subprocess.Popen(
        [sys.executable, str(script), str(report), where, str(budget_s)],
        cwd=ROOT,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    return process, report


def wait_until_measured(report: Path) -> None:
    """Until the first phase is saved as done; then a moment, well into the hanging one."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if json.loads(report.read_text())["phases"]["measured"]["status"] == "done":
                time.sleep(0.5)
                return
        except (OSError, ValueError):  # not written yet, or being written
            pass
        time.sleep(0.05)
    raise AssertionError("the first phase was never saved as done")


@pytest.mark.parametrize(
    ("signum", "where"), [(signal.SIGTERM, "child"), (signal.SIGINT, "in-process")]
)
def test_a_signal_writes_what_there_is_and_exits_non_zero(
    tmp_path: Path, signum: signal.Signals, where: str
) -> None:
    process, report = start(tmp_path, where, 0)
    wait_until_measured(report)
    process.send_signal(signum)
    assert process.wait(timeout=30) == 128 + signum
    result = json.loads(report.read_text())
    assert result["engines"] == ["fp32"]
    assert result["phases"]["hangs"]["status"] == f"interrupted ({signum.name})"
    assert result["phases"]["after"]["status"] == "not run"
    assert result["partial"] is True
    assert result["missing"] == ["hangs", "after"]


def test_the_budget_ends_a_hanging_phase_and_keeps_the_rest(tmp_path: Path) -> None:
    process, report = start(tmp_path, "in-process", 3)
    assert process.wait(timeout=30) == 0  # the script's own choice; bench gpu exits 1
    result = json.loads(report.read_text())
    assert result["engines"] == ["fp32"]
    assert result["phases"]["hangs"]["status"] == "timed out"
    assert result["phases"]["after"]["status"] == "not run (the budget was spent)"
    assert result["missing"] == ["hangs", "after"]
