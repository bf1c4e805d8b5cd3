"""The page for people at `/`: HTML, CSS and JavaScript shipped in the package.

No framework, no CDN, no build step: the files in app/static are served as they are, so
the page works on an air-gapped machine. The HTML names each asset with its content hash
(`/static/app.js?v=...`); such a URL is cached for a year, since what it names can never
change, while the HTML itself (and an asset asked for without the current hash) is
revalidated on every load by its ETag, so an upgrade shows at once. Every response
carries a strict Content-Security-Policy: no inline script or style, nothing from
another origin, images only from the page's own `blob:` URLs (the thumbnails).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from app.config import Settings
from app.errors import NotFound

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
}
REVALIDATE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Asset:
    """One file as served: its bytes, its type, and its content hash (ETag and `?v=`)."""

    body: bytes
    content_type: str
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", hashlib.sha256(self.body).hexdigest()[:16])

    def response(self, request: Request, cache_control: str) -> Response:
        """The file, or 304 when the browser already holds this version."""
        etag = f'"{self.digest}"'
        headers = {**SECURITY_HEADERS, "ETag": etag, "Cache-Control": cache_control}
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type=self.content_type, headers=headers)


def load_assets() -> dict[str, Asset]:
    """Every file in app/static with a known type, by name (the package data)."""
    assets = {}
    for item in (resources.files("app") / "static").iterdir():
        content_type = CONTENT_TYPES.get(item.name.rpartition(".")[2])
        if content_type is not None:
            assets[item.name] = Asset(item.read_bytes(), content_type)
    return assets


def render_page(assets: dict[str, Asset], settings: Settings) -> Asset:
    """index.html with each asset's URL made version-specific, and whether a key is needed."""
    html = assets["index.html"].body.decode()
    for name, asset in assets.items():
        html = html.replace(f"{{{{{name}}}}}", f"/static/{name}?v={asset.digest}")
    needs_key = "required" if settings.api_key is not None else "none"
    return Asset(html.replace("{{api_key}}", needs_key).encode(), CONTENT_TYPES["html"])


def router_for(settings: Settings) -> APIRouter:
    """`GET /` (the page) and `GET /static/NAME` (its assets), read once, served from memory."""
    assets = load_assets()
    page = render_page(assets, settings)
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def index(request: Request) -> Response:
        return page.response(request, REVALIDATE)

    @router.get("/static/{name}")
    async def static(
        request: Request, name: str, v: Annotated[str | None, Query()] = None
    ) -> Response:
        asset = assets.get(name)
        if asset is None or name == "index.html":
            raise NotFound(f"no static file named '{name}'")
        return asset.response(request, IMMUTABLE if v == asset.digest else REVALIDATE)

    return router
