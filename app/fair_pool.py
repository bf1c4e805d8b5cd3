"""Worker threads shared by every model, taken in turns.

Each model has its own lane (a FIFO queue of work); a free thread takes the oldest item
of the lane served least recently. So a flood of slow-to-decode images sent to one model queues
behind itself, and another model's image waits for at most one item per busy lane, not
for the whole flood. Knows nothing of HTTP or images.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from app.errors import ShuttingDown

T = TypeVar("T")


@dataclass(eq=False)
class _Job(Generic[T]):
    work: Callable[..., T]
    args: tuple[Any, ...]
    future: asyncio.Future[T]
    on_done: Callable[[], None]


class FairPool:
    """`threads` worker threads serving lanes round robin."""

    def __init__(self, threads: int, thread_name_prefix: str) -> None:
        self.threads = threads
        self._executor = concurrent.futures.ThreadPoolExecutor(
            threads, thread_name_prefix=thread_name_prefix
        )
        self._lanes: OrderedDict[str, deque[_Job[Any]]] = OrderedDict()
        self._running: set[concurrent.futures.Future[Any]] = set()  # items on a thread now
        self._closed = False

    @property
    def busy(self) -> bool:
        """Work is running on a thread now (also after the event loop has stopped)."""
        return bool(self._running)

    @property
    def waiting(self) -> int:
        """Items queued in every lane, not yet on a thread."""
        return sum(len(jobs) for jobs in self._lanes.values())

    def submit(
        self,
        lane: str,
        work: Callable[..., T],
        *args: Any,
        on_done: Callable[[], None] = lambda: None,
    ) -> asyncio.Future[T]:
        """`work(*args)` on a thread when `lane`'s turn comes. `on_done` runs on the loop
        once the item leaves the pool: finished, or dropped because its future was
        cancelled before a thread took it. A cancelled item already on a thread still
        occupies it until it finishes."""
        if self._closed:
            raise ShuttingDown("the service is shutting down")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        if lane not in self._lanes:  # never served yet: first in line
            self._lanes[lane] = deque()
            self._lanes.move_to_end(lane, last=False)
        self._lanes[lane].append(_Job(work, args, future, on_done))
        self._dispatch()
        return future

    def _next(self) -> _Job[Any] | None:
        """The oldest item of the lane served least recently, if any. Lanes stay when they
        empty (there is one per model name), so a lane that was just served goes last even
        if its next item arrives later than another lane's."""
        for lane, jobs in self._lanes.items():
            if jobs:
                self._lanes.move_to_end(lane)
                return jobs.popleft()
        return None

    def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        # An item leaves `_running` on its thread before `_finished` runs on the loop: the
        # thread is free from then on.
        while len(self._running) < self.threads and (job := self._next()) is not None:
            if job.future.cancelled():  # its caller gave up while it waited: never run
                job.on_done()
                continue
            running = self._executor.submit(job.work, *job.args)
            self._running.add(running)
            running.add_done_callback(self._running.discard)
            running.add_done_callback(functools.partial(self._on_thread_done, loop, job))

    def _on_thread_done(
        self,
        loop: asyncio.AbstractEventLoop,
        job: _Job[Any],
        ran: concurrent.futures.Future[Any],
    ) -> None:
        # On the worker thread: the loop may be gone by the time a stuck item finishes.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._finished, job, ran)

    def _finished(self, job: _Job[Any], ran: concurrent.futures.Future[Any]) -> None:
        job.on_done()
        if not job.future.done():
            if ran.cancelled():
                job.future.set_exception(ShuttingDown("the service is shutting down"))
            elif (error := ran.exception()) is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(ran.result())
        if not self._closed:
            self._dispatch()

    def close(self) -> None:
        """Refuse new work and fail what waits; never waits for a busy thread."""
        self._closed = True
        for jobs in self._lanes.values():
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(ShuttingDown("the service is shutting down"))
                job.on_done()
        self._lanes.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)
