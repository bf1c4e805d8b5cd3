"""`python -m app`: load the models (failing fast), then serve with a graceful drain; the
signals and the bounded exit are described in app/web/server.py."""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError

from app import __version__
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
    log.info("densenet-serve %s", __version__)
    try:
        loaded = load_models(settings)
    except ModelLoadError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return serve(settings, loaded)


if __name__ == "__main__":
    sys.exit(main())
