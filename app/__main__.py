"""`python -m app`: load the model (failing fast), then serve with graceful SIGTERM drain."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from types import FrameType

import uvicorn
from pydantic import ValidationError

from app.config import Settings
from app.engine import Engine, ModelLoadError
from app.logs import configure_logging
from app.main import create_app, load_engine
from app.state import AppState

log = logging.getLogger("app")


class DrainingServer(uvicorn.Server):
    """uvicorn, except that the first SIGTERM/SIGINT drains before stopping.

    Draining: readiness turns 503 and new classifications get 503 at once, while every
    request already accepted runs to completion (up to the grace period). Then uvicorn
    shuts down as usual and the process exits 0. A second signal stops at once.
    """

    def __init__(self, config: uvicorn.Config, state: AppState) -> None:
        super().__init__(config)
        self.state = state
        self._drain_started = False
        self.exit_code = 0
        state.on_fatal = self.fail

    def fail(self) -> None:
        """Stop at once with a non-zero exit (the app found it cannot serve)."""
        self.exit_code = 1
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_started:
            self.force_exit = self.should_exit = True
            return
        self._drain_started = True
        self.state.draining = True
        self.state.set_ready_gauge()
        log.info(
            "received %s: draining for up to %g s",
            signal.Signals(sig).name,
            self.state.settings.shutdown_grace_s,
        )
        asyncio.get_event_loop().call_soon_threadsafe(lambda: asyncio.ensure_future(self._drain()))

    async def _drain(self) -> None:
        deadline = time.monotonic() + self.state.settings.shutdown_grace_s
        batcher = self.state.batcher
        if batcher:
            batcher.stop_waiting()
        while time.monotonic() < deadline:
            queued = batcher.queue_depth + batcher.in_flight if batcher else 0
            if self.state.active_requests == 0 and queued == 0:
                break
            await asyncio.sleep(0.05)
        log.info("drained; stopping")
        # uvicorn's own shutdown gets what is left of the grace period, not a second one.
        self.config.timeout_graceful_shutdown = max(1, int(deadline - time.monotonic()))
        self.should_exit = True


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"invalid DENSENET_* settings:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    try:
        engine: Engine = load_engine(settings)
    except ModelLoadError as exc:
        log.error("cannot start: %s", exc)
        return 1
    app = create_app(settings, engine_factory=lambda: engine)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_s)),
        timeout_keep_alive=5,
    )
    server = DrainingServer(config, app.state.service)
    server.run()
    if not server.started:  # uvicorn could not start the app (it logged why)
        return 1
    return server.exit_code


if __name__ == "__main__":
    sys.exit(main())
