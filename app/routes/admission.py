"""What every inference route does around its pipeline call, whatever protocol it speaks:
refuse early (draining, unknown model, not ready), then await the work within the request
timeout, abandoning it when the client goes away or the service is stopped outright."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from app.errors import ClientDisconnected, ShuttingDown, Timeout
from app.pipeline import Pipeline
from app.state import Service

T = TypeVar("T")


def pick(service: Service, model: str | None, version: int | None) -> Pipeline:
    """The pipeline a request asks for; raises before its body is read when it cannot run."""
    service.drain.check_admit()
    pipeline = service.models().find(model, version)
    pipeline.check_ready()
    return pipeline


async def _until_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def bounded(request: Request, service: Service, work: Awaitable[T]) -> T:
    """Run `work` within the request timeout; abandon it if the client goes away or the
    service is stopped outright."""
    task = asyncio.ensure_future(work)
    watchers = {
        asyncio.ensure_future(_until_disconnect(request)): ClientDisconnected(
            "client closed the connection"
        ),
        asyncio.ensure_future(service.drain.aborted.wait()): ShuttingDown(
            "the service was stopped before this request finished"
        ),
    }
    timeout = service.settings.request_timeout_s
    try:
        done, _ = await asyncio.wait(
            {task, *watchers}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            return task.result()
        for watcher, error in watchers.items():
            if watcher in done:
                raise error
        raise Timeout(f"not answered within the request timeout ({timeout:g} s)")
    finally:
        for pending in (task, *watchers):
            pending.cancel()
