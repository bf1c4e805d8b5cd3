"""How ``python -m bench gpu`` spends its time: phases one after another under one budget,
every subprocess with a timeout, and the report written after each phase and at once on
SIGINT, SIGTERM or the budget's end, so that a run cut short keeps what it measured.

The report says what is missing: ``result["phases"]`` holds each phase's status (``done``,
``incomplete`` with the steps that failed, ``failed``, ``timed out``, ``interrupted`` or
``not run``), and ``result["partial"]`` is true until every phase is done.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

MARGIN_S = 5.0  # a step stops this long before the budget ends, to leave time to write


class Stopped(BaseException):
    """SIGINT or SIGTERM: raised in the main thread, past every ``except Exception``."""

    def __init__(self, signal_name: str, exit_code: int) -> None:
        super().__init__(signal_name)
        self.exit_code = exit_code


class BudgetSpent(BaseException):
    """The run's time budget is spent: the phase in progress ends, the rest do not run."""


class StepFailed(Exception):
    """One measurement's subprocess exited non-zero or timed out; the phase goes on."""


class Budget:
    """The seconds a run may take (0: no limit)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds if seconds > 0 else float("inf")

    def left(self) -> float:
        """Seconds a step may still take (the budget less MARGIN_S)."""
        return self.deadline - time.monotonic() - MARGIN_S

    def timeout(self, cap_s: float) -> float:
        """Seconds the next step may take: its own cap, and never past the budget."""
        left = self.left()
        if left <= 0:
            raise BudgetSpent(f"the budget of {self.seconds:.0f} s is spent")
        return min(cap_s, left)


def run_python(arguments: list[str], timeout_s: float, env: dict[str, str] | None = None) -> str:
    """The stdout of ``python ARGUMENTS``; StepFailed if it fails or runs past TIMEOUT_S
    (then it is killed). Its stderr (progress lines) goes to this process's stderr."""
    with subprocess.Popen(
        [sys.executable, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as process:
        try:
            out, err = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            sys.stderr.write(err)
            raise StepFailed(f"timed out after {timeout_s:.0f} s") from None
        except BaseException:  # Stopped or BudgetSpent: the child goes too
            process.kill()
            raise
    sys.stderr.write(err)
    if process.returncode != 0:
        tail = " ".join(err.strip().splitlines()[-3:])[-300:]
        raise StepFailed(f"exit {process.returncode}: {tail}")
    return out


class Phases:
    """Runs named phases in order, records how each ended in RESULT and calls SAVE after
    each one (and on a signal or the budget's end, before unwinding)."""

    def __init__(
        self,
        names: list[str],
        result: dict[str, Any],
        save: Callable[[bool], None],
        budget: Budget,
    ) -> None:
        self.result, self.save, self.budget = result, save, budget
        result["phases"] = {name: {"status": "not run"} for name in names}
        self.current: str | None = None
        self.started = time.monotonic()
        self._update()

    def run(self, name: str, phase: Callable[[], list[str]]) -> None:
        """PHASE returns the steps that failed (it records them in its own results)."""
        record = self.result["phases"][name]
        if self.result.get("budget_spent") or self.budget.left() <= 0:
            self.result["budget_spent"] = True
            record["status"] = "not run (the budget was spent)"
            self._update()
            self.save(False)
            return
        self.current, began = name, time.monotonic()
        try:
            failed = phase()
            record.update(status="incomplete" if failed else "done", failed_steps=failed)
        except BudgetSpent as exc:
            record.update(status="timed out", error=str(exc))
            self.result["budget_spent"] = True
        except Stopped:
            record["status"] = f"interrupted ({self.result.get('stopped_by')})"
            raise
        except Exception as exc:  # a phase that breaks is a result; the next ones still run
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:500])
        finally:
            record["seconds"] = round(time.monotonic() - began, 1)
            self.current = None
            self._update()
            self.save(True)

    def _update(self) -> None:
        phases = self.result["phases"]
        self.result["missing"] = [n for n, p in phases.items() if p["status"] != "done"]
        self.result["partial"] = bool(self.result["missing"])
        self.result["duration_s"] = time.monotonic() - self.started

    def _on_signal(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        for other in (signal.SIGINT, signal.SIGTERM):  # one stop; a second signal is ignored
            signal.signal(other, signal.SIG_IGN)
        self.result["stopped_by"] = name
        self._stop_now(f"interrupted ({name})")
        raise Stopped(name, 128 + signum)

    def _on_alarm(self, _signum: int, _frame: object) -> None:
        self.result["budget_spent"] = True
        self._stop_now("timed out")
        raise BudgetSpent(f"the budget of {self.budget.seconds:.0f} s is spent")

    def _stop_now(self, status: str) -> None:
        """Write the report before unwinding (stopping a server may take a while)."""
        if self.current is not None:
            self.result["phases"][self.current]["status"] = status
        self._update()
        self.save(False)

    def __enter__(self) -> Phases:
        self._previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        if self.budget.seconds > 0:
            signal.signal(signal.SIGALRM, self._on_alarm)
            signal.setitimer(signal.ITIMER_REAL, self.budget.seconds)
        self.save(False)  # from the start, a report that says what is still missing
        return self

    def __exit__(self, *_exc: object) -> None:
        """SIGINT and SIGTERM stay ignored until release(): the final write is not cut short."""
        signal.setitimer(signal.ITIMER_REAL, 0)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        self._update()

    def release(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
