"""Asyncio dynamic batcher: groups single inputs into batches for one synchronous model.

A batch starts when it is full or when `max_batch_delay_s` has passed since its first
input arrived. Every batcher of a process runs its batches through one `InferenceDevice`:
one batch at a time, on one worker thread, so the event loop never blocks and two models
never compete for the same cores. The device's lock is fair (first come, first served),
so while one model is flooded another model's batch still gets the next turn.
Knows nothing of HTTP or images.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from app.errors import InferenceFailed, Overloaded, ServiceError, ShuttingDown
from app.metrics import ModelMetrics

log = logging.getLogger(__name__)

RunBatch = Callable[[NDArray[np.float32]], NDArray[np.float32]]
# (batch size, seconds to stack the inputs, to run the model, to hand out the rows)
BatchObserver = Callable[[int, float, float, float], None]
T = TypeVar("T")


class InferenceDevice:
    """Runs one batch at a time for every batcher that shares it, in arrival order."""

    def __init__(self) -> None:
        self._turn = asyncio.Lock()  # asyncio.Lock wakes waiters first-in, first-out
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._running: set[Future[Any]] = set()

    @property
    def busy(self) -> bool:
        """Work is running on the inference thread (its caller may have given up on it)."""
        return bool(self._running)

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold the device: nobody else's work runs until this block ends."""
        async with self._turn:
            yield

    async def run(self, work: Callable[..., T], *args: object) -> T:
        """`work(*args)` on the inference thread; the caller holds the turn."""
        running = self._executor.submit(work, *args)
        self._running.add(running)
        running.add_done_callback(self._running.discard)
        return await asyncio.wrap_future(running)

    async def call(self, work: Callable[..., T], *args: object) -> T:
        """`work(*args)` on the inference thread, when this device's turn comes."""
        async with self.turn():
            return await self.run(work, *args)

    def close(self) -> None:
        """Stop the worker thread once it is idle; never waits for a stuck inference."""
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class BatchResult:
    output: NDArray[np.float32]  # this input's row of the batch output
    queue_wait_s: float
    inference_s: float
    batch_size: int


@dataclass(eq=False)  # identity: deque.remove() must not compare tensors (ValueError)
class _Pending:
    tensor: NDArray[np.float32]
    future: asyncio.Future[BatchResult]
    enqueued: float
    request_id: str | None


class DynamicBatcher:
    def __init__(
        self,
        run_batch: RunBatch,
        device: InferenceDevice,
        metrics: ModelMetrics,
        max_batch_size: int,
        max_batch_delay_s: float,
        max_queue_size: int,
        on_batch: BatchObserver | None = None,
    ) -> None:
        self._run_batch = run_batch
        self._on_batch = on_batch
        self._device = device
        self._metrics = metrics
        self.max_batch_size = max_batch_size
        self.max_batch_delay_s = max_batch_delay_s
        self.max_queue_size = max_queue_size
        self._pending: deque[_Pending] = deque()
        self._has_pending = asyncio.Event()
        self._batch_full = asyncio.Event()
        self._closing = False
        self._no_delay = False  # set while draining: nobody new will join a batch
        self._running: list[_Pending] = []  # the batch being run now
        self._worker: asyncio.Task[None] | None = None
        self.crashed = False  # the worker ended without close(): nothing will run

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        """Inputs in the batch being run now."""
        return len(self._running)

    def start(self) -> None:
        self._worker = asyncio.create_task(self._work(), name="batcher")
        self._worker.add_done_callback(self._worker_ended)

    def _worker_ended(self, worker: asyncio.Task[None]) -> None:
        """A worker that ends before close() was called crashed: fail what waits, say so,
        and refuse from now on (readiness reads `crashed`)."""
        if self._closing:
            return
        self.crashed = True
        error = None if worker.cancelled() else worker.exception()
        log.error("the batch worker stopped unexpectedly; this model cannot serve", exc_info=error)
        self._fail_waiting(InferenceFailed("the model's batch worker stopped; see the server log"))

    async def submit(
        self, tensor: NDArray[np.float32], request_id: str | None = None
    ) -> BatchResult:
        """Queue one input and wait for its row of the output.

        Raises Overloaded at once when the queue is full. Cancelling the caller removes
        the input from the queue (or ignores its result if its batch already started).
        """
        if self._closing:
            raise ShuttingDown("the service is shutting down")
        if self.crashed:
            raise InferenceFailed("the model's batch worker stopped; see the server log")
        if len(self._pending) >= self.max_queue_size:
            raise Overloaded(f"the inference queue is full ({self.max_queue_size} images)")
        future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        item = _Pending(tensor, future, time.perf_counter(), request_id)
        self._pending.append(item)
        future.add_done_callback(lambda f: self._forget(item) if f.cancelled() else None)
        self._changed()
        return await future

    def stop_waiting(self) -> None:
        """Run batches without the batch delay from now on (draining: no one new comes)."""
        self._no_delay = True
        self._batch_full.set()

    async def close(self) -> None:
        """Stop accepting inputs, finish every queued one, then stop the worker."""
        self._closing = True
        self._has_pending.set()
        self._batch_full.set()
        if self._worker is not None and not self._worker.done():  # a crashed one is over
            await self._worker

    def abort(self, error: ServiceError) -> None:
        """Fail every queued and running input with `error` now (a forced stop)."""
        self._closing = True
        self._fail_waiting(error)

    def _fail_waiting(self, error: ServiceError) -> None:
        for item in [*self._pending, *self._running]:
            if not item.future.done():
                item.future.set_exception(error)
        self._pending.clear()
        self._changed()

    def _forget(self, item: _Pending) -> None:
        with contextlib.suppress(ValueError):
            self._pending.remove(item)
            self._changed()

    def _changed(self) -> None:
        self._metrics.queue_depth.set(len(self._pending))
        if self._pending:
            self._has_pending.set()
        if len(self._pending) >= self.max_batch_size:
            self._batch_full.set()

    async def _work(self) -> None:
        while True:
            while not self._pending:
                if self._closing:
                    return
                self._has_pending.clear()
                await self._has_pending.wait()
            await self._wait_for_batch()
            # The batch is taken once the device is ours: whatever queued while another
            # model's batch ran joins it (taking it before the wait halved batches under
            # mixed traffic), and the inference time below is this batch's alone.
            async with self._device.turn():
                batch = self._take_batch()
                if batch:
                    try:
                        await self._run(batch)
                    except Exception:  # never let the worker die; _run failed the batch
                        log.exception("batcher worker error")

    async def _wait_for_batch(self) -> None:
        """Until the batch is full or the oldest input has waited max_batch_delay_s."""
        deadline = self._pending[0].enqueued + self.max_batch_delay_s
        while len(self._pending) < self.max_batch_size and not (self._closing or self._no_delay):
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._batch_full.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._batch_full.wait()

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        while self._pending and len(batch) < self.max_batch_size:
            item = self._pending.popleft()
            if not item.future.done():
                batch.append(item)
        self._changed()
        return batch

    async def _run(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        self._running = batch
        try:
            inputs = np.stack([item.tensor for item in batch])
            stacked = time.perf_counter()
            outputs = await self._device.run(self._run_batch, inputs)
            ran = time.perf_counter()
            if outputs.shape[0] != len(batch):
                raise RuntimeError(
                    f"model returned {outputs.shape[0]} rows for {len(batch)} inputs"
                )
        except Exception as exc:
            error_id = uuid.uuid4().hex[:12]
            log.error(
                "inference failed on a batch of %d (error id %s; request ids %s)",
                len(batch),
                error_id,
                ", ".join(item.request_id or "-" for item in batch),
                exc_info=exc,
            )
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(
                        InferenceFailed(f"inference failed (error id {error_id})")
                    )
            return
        finally:
            self._running = []
        inference_s = time.perf_counter() - started
        self._metrics.inference_seconds.observe(inference_s)
        self._metrics.batch_size.observe(len(batch))
        for row, item in enumerate(batch):
            wait = started - item.enqueued
            self._metrics.queue_wait_seconds.observe(wait)
            if not item.future.done():
                item.future.set_result(BatchResult(outputs[row], wait, inference_s, len(batch)))
        if self._on_batch is not None:
            self._on_batch(len(batch), stacked - started, ran - stacked, time.perf_counter() - ran)
