"""The server's CPU time per image over one measured window, with the engine's share.

Images come from the server's own counter (``classifier_images_classified_total`` on
/metrics), CPU time from /proc: the whole process (utime + stime, which keeps the time of
threads that ended meanwhile) and each thread (``/proc/PID/task/TID/stat``). The engine's
threads are the batcher's ``inference`` thread, which calls the ONNX Runtime session, and
the session's intra-op pool: native threads Python does not know (``py-spy dump`` names the
Python ones) that keep the process's own name. gRPC's core threads name themselves
(``grpc_global_tim``, ``event_engine``, ``lifeguard``), so they count with the front, as do
the event loop, the preprocessing pool and every other thread.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import promtext
from bench.cpu import process_cpu_s
from bench.cpu_threads import thread_cpu_s, thread_names

ENGINE_THREAD = "inference"  # the batcher's executor (app/batching.py)
RUNTIME_POOL = "native, unnamed (ONNX Runtime's pool)"


def _comm(pid: int, tid: int) -> str:
    try:
        return Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
    except OSError:
        return "?"


async def _scrape(url: str) -> dict[str, float] | None:
    async with httpx.AsyncClient() as client:
        return await promtext.scrape(client, url)


@dataclass
class Sample:
    """The server at one instant: wall clock, process and thread CPU, its counters."""

    wall_s: float
    process_cpu_s: float
    threads_cpu_s: dict[int, float]
    metrics: dict[str, float] | None

    @classmethod
    def take(cls, pid: int, url: str) -> Sample:
        metrics = asyncio.run(_scrape(url))  # first: the scrape's own CPU falls inside
        return cls(time.monotonic(), process_cpu_s(pid), thread_cpu_s(pid), metrics)


def thread_groups(pid: int) -> dict[int, str]:
    """Thread id -> what it is: its Python name, or else its OS name (RUNTIME_POOL for the
    native threads that carry the process's own name)."""
    python_names = thread_names(pid)
    own = _comm(pid, pid)
    groups = {}
    for tid in thread_cpu_s(pid):
        comm = _comm(pid, tid)
        groups[tid] = python_names.get(tid) or (RUNTIME_POOL if comm == own else comm)
    return groups


def per_image(before: Sample, after: Sample, groups: dict[int, str]) -> dict[str, Any]:
    """Server, engine and front CPU milliseconds per image answered between two samples."""
    metrics = promtext.deltas(before.metrics, after.metrics)
    images = metrics.get("images_classified") or 0.0
    by_group: dict[str, float] = {}
    for tid, cpu_s in after.threads_cpu_s.items():
        name = groups.get(tid, "ended or unnamed")
        by_group[name] = by_group.get(name, 0.0) + cpu_s - before.threads_cpu_s.get(tid, 0.0)
    server_s = after.process_cpu_s - before.process_cpu_s
    engine_s = by_group.get(ENGINE_THREAD, 0.0) + by_group.get(RUNTIME_POOL, 0.0)

    def ms(seconds: float) -> float | None:
        return 1000 * seconds / images if images else None

    return {
        "images": images,
        "window_s": after.wall_s - before.wall_s,
        "mean_batch_size": metrics.get("mean_batch_size"),
        "server_cpu_ms_per_image": ms(server_s),
        "engine_cpu_ms_per_image": ms(engine_s),
        "front_cpu_ms_per_image": ms(server_s - engine_s),
        "threads_cpu_ms_per_image": {k: ms(v) for k, v in sorted(by_group.items())},
    }
