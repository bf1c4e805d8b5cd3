"""Graceful shutdown, owned in one place: begin, track accepted work, wait until idle.

Knows nothing of HTTP or signals: `python -m app` calls `begin`/`abort` from the event
loop, the web layer wraps each classification in `track()` and asks `check_admit()`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from app.errors import ShuttingDown


class Drain:
    """Shutdown state: draining (refuse new work, finish accepted work) and aborted
    (a forced stop: accepted work is answered 503 at once)."""

    def __init__(self) -> None:
        self.draining = False
        self.deadline: float | None = None  # time.monotonic() by which everything stops
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.aborted = asyncio.Event()
        self._listeners: list[Callable[[], None]] = []

    @property
    def active(self) -> int:
        """Classifications accepted and not yet answered."""
        return self._active

    def on_begin(self, listener: Callable[[], None]) -> None:
        """Call `listener` when draining begins (e.g. to stop waiting for fuller batches)."""
        self._listeners.append(listener)

    def begin(self, grace_s: float) -> None:
        """Start draining with `grace_s` for accepted work; later calls change nothing."""
        if self.draining:
            return
        self.draining = True
        self.deadline = time.monotonic() + grace_s
        for listener in self._listeners:
            listener()

    def abort(self) -> None:
        """Give up on accepted work: everything waiting is answered `shutting_down` now."""
        self.begin(0)
        self.aborted.set()

    def remaining_s(self) -> float:
        """Seconds left of the grace period (infinite before draining began)."""
        if self.deadline is None:
            return float("inf")
        return max(0.0, self.deadline - time.monotonic())

    def check_admit(self) -> None:
        if self.draining:
            raise ShuttingDown("the service is shutting down; retry on another instance")

    @contextmanager
    def track(self) -> Iterator[None]:
        """Count one accepted classification until it is answered."""
        self._active += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """Until no accepted work is left (True) or `timeout_s` passed (False)."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True
