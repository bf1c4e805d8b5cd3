"""DynamicBatcher with a plain numpy batch function: sizes, order, failures, limits, drain."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from numpy.typing import NDArray

from app.batching import DynamicBatcher, InferenceDevice
from app.errors import InferenceFailed, Overloaded, ShuttingDown
from app.metrics import Metrics
from tests.conftest import wait_until


class Model:
    """Returns each input's sum; records batch sizes; can be held or made to fail."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False
        self.rows_short = False

    def __call__(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        self.gate.wait(10)
        if self.fail:
            raise RuntimeError("boom")
        self.sizes.append(len(batch))
        out = batch.reshape(len(batch), -1).sum(axis=1, keepdims=True)
        return out[:-1] if self.rows_short else out


def make(model: Model, **kwargs: float) -> DynamicBatcher:
    options = {"max_batch_size": 4, "max_batch_delay_s": 0.05, "max_queue_size": 16, **kwargs}
    metrics = Metrics().for_model("m", 1)
    batcher = DynamicBatcher(model, InferenceDevice(), metrics, **options)  # type: ignore[arg-type]
    batcher.start()
    return batcher


def item(value: float) -> NDArray[np.float32]:
    return np.full((1, 2, 2), value, np.float32)


async def test_batches_fill_up_and_results_go_back_in_order() -> None:
    model = Model()
    batcher = make(model)
    results = await asyncio.gather(*(batcher.submit(item(i)) for i in range(10)))
    assert [float(r.output[0]) for r in results] == [4.0 * i for i in range(10)]
    assert model.sizes == [4, 4, 2]
    assert [r.batch_size for r in results] == [4] * 8 + [2] * 2
    await batcher.close()


async def test_lone_request_waits_at_most_the_delay() -> None:
    model = Model()
    batcher = make(model, max_batch_delay_s=0.02)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await batcher.submit(item(1))
    assert result.batch_size == 1
    assert loop.time() - started < 1.0
    assert result.queue_wait_s >= 0.015
    await batcher.close()


async def test_failing_batch_fails_each_request_and_the_next_succeeds() -> None:
    model = Model()
    batcher = make(model)
    model.fail = True
    outcomes = await asyncio.gather(
        *(batcher.submit(item(i)) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(o, InferenceFailed) for o in outcomes)
    model.fail = False
    assert float((await batcher.submit(item(2))).output[0]) == 8.0
    await batcher.close()


async def test_wrong_row_count_is_a_failure_not_a_mixup() -> None:
    model = Model()
    model.rows_short = True
    batcher = make(model)
    outcomes = await asyncio.gather(
        *(batcher.submit(item(i)) for i in range(2)), return_exceptions=True
    )
    assert all(isinstance(o, InferenceFailed) for o in outcomes)
    await batcher.close()


async def test_queue_limit_and_cancellation_free_slots() -> None:
    model = Model()
    batcher = make(model, max_batch_size=1, max_queue_size=2, max_batch_delay_s=0)
    model.gate.clear()
    running = asyncio.ensure_future(batcher.submit(item(0)))
    await wait_until(lambda: batcher.in_flight)  # the first batch holds the model
    waiting = [asyncio.ensure_future(batcher.submit(item(i))) for i in (1, 2)]
    await wait_until(lambda: batcher.queue_depth == 2)
    with pytest.raises(Overloaded):
        await batcher.submit(item(3))
    waiting[0].cancel()
    await wait_until(lambda: batcher.queue_depth == 1)  # the cancelled one gave its slot back
    late = asyncio.ensure_future(batcher.submit(item(4)))
    model.gate.set()
    assert float((await running).output[0]) == 0.0
    assert float((await waiting[1]).output[0]) == 8.0
    assert float((await late).output[0]) == 16.0
    assert model.sizes == [1, 1, 1]
    await batcher.close()


async def test_close_finishes_queued_work_then_refuses() -> None:
    model = Model()
    batcher = make(model, max_batch_delay_s=1.0)
    pending = [asyncio.ensure_future(batcher.submit(item(i))) for i in range(3)]
    await wait_until(lambda: batcher.queue_depth == 3)
    await batcher.close()  # does not wait out the 1 s delay
    assert [float((await p).output[0]) for p in pending] == [0.0, 4.0, 8.0]
    with pytest.raises(ShuttingDown):
        await batcher.submit(item(1))


async def test_stop_waiting_runs_a_partial_batch_at_once() -> None:
    model = Model()
    batcher = make(model, max_batch_delay_s=30.0)
    pending = [asyncio.ensure_future(batcher.submit(item(i))) for i in range(2)]
    await asyncio.sleep(0.05)
    assert model.sizes == []  # still waiting for company
    batcher.stop_waiting()
    assert [float((await p).output[0]) for p in pending] == [0.0, 4.0]
    assert model.sizes == [2]
    assert float((await batcher.submit(item(3))).output[0]) == 12.0  # still accepting
    await batcher.close()
