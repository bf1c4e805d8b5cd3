"""How much CPU went to processes outside the benchmark during a step (Linux /proc).

The machine is shared: a step's numbers mean little if something else took a core
meanwhile. Each step records ``other_cpu_cores``, the average number of cores busy with
anything but the server, the load generator and the harness itself.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")
NOISY_CORES = 0.25  # a step during which other processes used more is marked noisy


def is_noisy(measured: dict[str, Any] | None) -> bool:
    """Whether other processes took a noticeable share of the CPU during a measurement."""
    return measured is not None and (measured.get("other_cpu_cores") or 0.0) > NOISY_CORES


def _machine_busy_s() -> float:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process, threads that ended included."""
    after_name = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(after_name[11]) + int(after_name[12])) / _TICK  # utime, stime


def _own_and_children_cpu_s() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@dataclass
class CpuSnapshot:
    wall_s: float
    machine_s: float
    server_s: float
    ours_s: float

    @classmethod
    def take(cls, server_pid: int | None) -> CpuSnapshot:
        """Now; `server_pid` is a running process not waited for by this one (or None)."""
        try:
            server = process_cpu_s(server_pid) if server_pid is not None else 0.0
        except OSError:
            server = 0.0
        return cls(time.monotonic(), _machine_busy_s(), server, _own_and_children_cpu_s())

    def other_cores_since(self, earlier: CpuSnapshot) -> float | None:
        """Average cores used by everything else between two snapshots (None off Linux)."""
        wall = self.wall_s - earlier.wall_s
        if wall <= 0:
            return None
        ours = (self.server_s - earlier.server_s) + (self.ours_s - earlier.ours_s)
        return max(0.0, (self.machine_s - earlier.machine_s) - ours) / wall

    def harness_cores_since(self, earlier: CpuSnapshot) -> float:
        """Cores used by this process and the children it waited for (the load generator)."""
        return (self.ours_s - earlier.ours_s) / max(1e-9, self.wall_s - earlier.wall_s)

    def server_cores_since(self, earlier: CpuSnapshot) -> float:
        return (self.server_s - earlier.server_s) / max(1e-9, self.wall_s - earlier.wall_s)


def busy_cores(seconds: float) -> float:
    """Cores the whole machine kept busy over the next `seconds` (the harness idles)."""
    start, start_busy = time.monotonic(), _machine_busy_s()
    time.sleep(seconds)
    return (_machine_busy_s() - start_busy) / (time.monotonic() - start)


def wait_for_quiet(threshold_cores: float, max_wait_s: float, say: Callable[[str], None]) -> float:
    """Wait (up to `max_wait_s`) until other work uses under `threshold_cores`; returns the
    seconds waited. On a shared machine this keeps other jobs' bursts out of a step."""
    started = time.monotonic()
    while time.monotonic() - started < max_wait_s:
        busy = busy_cores(1.0)
        if busy < threshold_cores:
            break
        say(f"waiting for the machine to quiet down: other processes use {busy:.2f} cores")
    return time.monotonic() - started
