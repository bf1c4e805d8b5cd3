"""Optional bearer-token authentication (settings.api_key); off when no key is set. The
gRPC front compares its `authorization` metadata with the same `check_bearer`."""

from __future__ import annotations

import secrets

from fastapi import Request
from pydantic import SecretStr

from app.errors import Unauthorized
from app.web.deps import get_dataplane


def check_bearer(api_key: SecretStr | None, authorization: str | None) -> None:
    """Refuse a request whose `Authorization` (an HTTP header, or gRPC metadata) does not
    carry the API key as a bearer token; anything goes when no key is set."""
    if api_key is None:
        return
    scheme, _, token = (authorization or "").partition(" ")
    expected = api_key.get_secret_value().encode()
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), expected):
        raise Unauthorized("missing or wrong API key; send 'Authorization: Bearer <key>'")


def _check(request: Request) -> None:
    check_bearer(get_dataplane(request).settings.api_key, request.headers.get("authorization"))


async def require_api_key(request: Request) -> None:
    _check(request)


async def require_ops_key(request: Request) -> None:
    if get_dataplane(request).settings.protect_ops_endpoints:
        _check(request)
