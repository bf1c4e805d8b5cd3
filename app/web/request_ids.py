"""Request ids: the client's own (`X-Request-ID` over HTTP, `x-request-id` metadata over
gRPC) when it is a short plain token, else a fresh one. Echoed in answers and logs."""

from __future__ import annotations

import re
import uuid

_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}", re.ASCII)


def request_id_from(given: str | None) -> str:
    return given if given and _CLIENT_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
