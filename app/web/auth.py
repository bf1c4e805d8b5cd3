"""Optional bearer-token authentication (settings.api_key); off when no key is set."""

from __future__ import annotations

import secrets

from fastapi import Request

from app.errors import Unauthorized
from app.web.deps import get_dataplane


def _check(request: Request) -> None:
    key = get_dataplane(request).settings.api_key
    if key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    expected = key.get_secret_value().encode()
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), expected):
        raise Unauthorized("missing or wrong API key; send 'Authorization: Bearer <key>'")


async def require_api_key(request: Request) -> None:
    _check(request)


async def require_ops_key(request: Request) -> None:
    if get_dataplane(request).settings.protect_ops_endpoints:
        _check(request)
