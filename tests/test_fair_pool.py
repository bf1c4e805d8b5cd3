"""FairPool: lanes taken round robin, cancelled items never run, close fails what waits."""

from __future__ import annotations

import asyncio
import threading

import pytest

from app.errors import ShuttingDown
from app.fair_pool import FairPool


class Gate:
    """Work items that block until released, recording the order they ran in."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.ran: list[str] = []

    def work(self, name: str) -> str:
        self.open.wait(10)
        self.ran.append(name)
        return name


async def test_lanes_take_turns() -> None:
    pool, gate = FairPool(1, "test"), Gate()
    try:
        flood = [pool.submit("a", gate.work, f"a{i}") for i in range(5)]
        other = pool.submit("b", gate.work, "b0")
        assert pool.waiting == 5  # a0 is on the thread
        gate.open.set()
        await asyncio.gather(*flood, other)
        assert gate.ran == ["a0", "b0", "a1", "a2", "a3", "a4"]
    finally:
        pool.close()


async def test_results_and_errors_reach_the_caller() -> None:
    pool = FairPool(2, "test")
    try:
        assert await pool.submit("a", sum, [1, 2, 3]) == 6
        with pytest.raises(ZeroDivisionError):
            await pool.submit("a", divmod, 1, 0)
    finally:
        pool.close()


async def test_a_cancelled_item_never_runs_and_still_leaves_the_pool() -> None:
    pool, gate = FairPool(1, "test"), Gate()
    left: list[str] = []
    try:
        first = pool.submit("a", gate.work, "first", on_done=lambda: left.append("first"))
        dropped = pool.submit("a", gate.work, "dropped", on_done=lambda: left.append("dropped"))
        dropped.cancel()
        gate.open.set()
        assert await first == "first"
        await asyncio.sleep(0)  # the dispatch after `first` drops the cancelled item
        assert gate.ran == ["first"]
        assert sorted(left) == ["dropped", "first"]
        assert pool.waiting == 0
    finally:
        pool.close()


async def test_close_fails_what_waits_and_refuses_new_work() -> None:
    pool, gate = FairPool(1, "test"), Gate()
    left: list[str] = []
    running = pool.submit("a", gate.work, "running")
    waiting = pool.submit("b", gate.work, "waiting", on_done=lambda: left.append("waiting"))
    pool.close()
    with pytest.raises(ShuttingDown):
        await waiting
    assert left == ["waiting"]
    with pytest.raises(ShuttingDown):
        pool.submit("a", gate.work, "late")
    gate.open.set()
    assert await running == "running"  # what was on a thread finishes
