"""The HTTP server of `python -m app`: uvicorn with the service's signal handling and a
bounded exit.

The gRPC front (DENSENET_GRPC_PORT) runs in the same event loop and stops with it.
Signals: the first SIGTERM or SIGINT drains (readiness 503, new work 503, accepted work
finishes within DENSENET_SHUTDOWN_GRACE_S); repeated SIGTERMs, as process managers and
shells send them, change nothing; a second SIGINT (Ctrl-C twice) stops at once, answering
whatever is still in progress with 503 shutting_down. The process exits within the grace
period plus 2 s, whatever the model is doing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Coroutine
from types import FrameType

import uvicorn

from app.config import Settings
from app.dataplane import DataPlane
from app.errors import ShuttingDown
from app.repository import LoadedModel
from app.web.app import create_app
from app.web.grpc import server as grpc_server

log = logging.getLogger("app")


class DrainingServer(uvicorn.Server):
    """uvicorn with the signal handling described in the module docstring."""

    def __init__(self, config: uvicorn.Config, dataplane: DataPlane) -> None:
        super().__init__(config)
        self.dataplane = dataplane
        self.exit_code = 0
        self._sigints = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        dataplane.on_fatal = self.fail

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """HTTP, and gRPC beside it in the same loop: readiness, drain and deadlines are
        the data plane's, so both fronts load, drain and stop together."""
        self._loop = asyncio.get_running_loop()
        front = None
        if self.dataplane.settings.grpc_port:
            try:
                front = await grpc_server.start(self.dataplane)
            except OSError as exc:
                log.error("%s", exc)
                self.exit_code = 1
                return
        try:
            await super().serve(sockets)
        finally:
            if front is not None:
                # Drained already (the drain counts gRPC calls too): what is still open
                # gets what is left of the grace period.
                await front.stop(max(0.1, self.dataplane.drain.remaining_s()))

    def fail(self) -> None:
        """Stop at once with a non-zero exit (the app found it cannot serve)."""
        self.exit_code = 1
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs inside a signal handler, between two bytecodes of whatever the loop was
        # doing (a metrics scrape holding a lock, say): only hand the signal to the loop.
        if self._loop is None:
            self.should_exit = True
            return
        self._loop.call_soon_threadsafe(self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        drain = self.dataplane.drain
        self._sigints += sig == signal.SIGINT
        if not drain.draining:
            grace = self.dataplane.settings.shutdown_grace_s
            log.info("received %s: draining for up to %g s", name, grace)
            drain.begin(grace)
            self._spawn(self._drain())
        elif sig == signal.SIGINT and self._sigints >= 2:
            log.warning("second SIGINT: stopping now; work in progress gets 503 shutting_down")
            self._spawn(self._force())
        else:
            log.info("received %s while draining: the drain goes on", name)

    def _spawn(self, work: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self) -> None:
        drain = self.dataplane.drain
        if await drain.wait_idle(drain.remaining_s()):
            log.info("drained; stopping")
        else:
            log.error("grace period over: %d request(s) unfinished get 503", drain.active)
            await self._abort()
        # uvicorn's own shutdown gets what is left of the grace period, not a second one.
        self.config.timeout_graceful_shutdown = max(0.1, drain.remaining_s())  # type: ignore[assignment]
        self.should_exit = True

    async def _force(self) -> None:
        # Not uvicorn's force_exit: that skips the lifespan and leaves tasks to be cancelled
        # with tracebacks. Everything was just answered, so a short orderly stop follows.
        await self._abort()
        self.config.timeout_graceful_shutdown = 0.1  # type: ignore[assignment]
        self.should_exit = True

    async def _abort(self) -> None:
        """Answer everything still in progress with 503 shutting_down, briefly."""
        self.dataplane.drain.abort()
        if self.dataplane.repository is not None:
            self.dataplane.repository.abort(ShuttingDown("the dataplane was stopped"))
        await self.dataplane.drain.wait_idle(0.5)


def _exit_without_stuck_threads(code: int, dataplane: DataPlane) -> int:
    """Python joins worker threads at exit; an inference or decode stuck in one must not
    hold it. Only the dataplane's own work counts: an idle thread some library keeps (the
    OpenVINO package starts a telemetry thread pool) ends by itself at exit."""
    repository = dataplane.repository
    deadline = time.monotonic() + 0.5
    while repository is not None and repository.threads_busy and time.monotonic() < deadline:
        time.sleep(0.01)
    if repository is not None and repository.threads_busy:
        log.error("exiting while a model is still running on a worker thread (a stuck inference?)")
        logging.shutdown()
        os._exit(code)
    return code


def serve(settings: Settings, loaded: list[LoadedModel]) -> int:
    """Serve the loaded models until a signal stops the server; the process's exit code."""
    app = create_app(settings, loaded=loaded)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_s)),
        timeout_keep_alive=settings.keep_alive_timeout_s,
        limit_concurrency=settings.limit_concurrency,
    )
    dataplane: DataPlane = app.state.dataplane
    server = DrainingServer(config, dataplane)
    server.run()
    # uvicorn restores the default handlers on its way out: a late repeated SIGTERM must
    # not turn a clean exit into death by signal.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if not server.started:  # uvicorn could not start the app (it logged why)
        return _exit_without_stuck_threads(1, dataplane)
    return _exit_without_stuck_threads(server.exit_code, dataplane)
