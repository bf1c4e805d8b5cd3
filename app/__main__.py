"""`python -m app`: load the models (failing fast), then serve with a graceful drain
(app/web/server.py).

Signals: the first SIGTERM or SIGINT drains (readiness 503, new work 503, accepted work
finishes within DENSENET_SHUTDOWN_GRACE_S); repeated SIGTERMs, as process managers and
shells send them, change nothing; a second SIGINT (Ctrl-C twice) stops at once, answering
whatever is still in progress with 503 shutting_down. The process exits within the grace
period plus 2 s, whatever the model is doing.
"""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError

from app.config import Settings
from app.errors import ModelLoadError
from app.logs import configure_logging
from app.repository import load_models
from app.web.server import serve

log = logging.getLogger("app")


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"invalid DENSENET_* settings:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    try:
        loaded = load_models(settings)
    except ModelLoadError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return serve(settings, loaded)


if __name__ == "__main__":
    sys.exit(main())
