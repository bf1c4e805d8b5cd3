"""The page's HTTP side: what `/` and `/static/*` answer, with which headers, and the switch."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.config import Settings
from app.web.page import CONTENT_SECURITY_POLICY, IMMUTABLE, REVALIDATE
from tests.conftest import serve, settings_for

EXPECTED_TYPES = {
    "app.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "cards.js": "text/javascript; charset=utf-8",
    "page.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


def assert_secure(headers: object) -> None:
    csp = headers["content-security-policy"]  # type: ignore[index]
    assert csp == CONTENT_SECURITY_POLICY
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no other origin
    assert "unsafe" not in csp
    assert headers["x-content-type-options"] == "nosniff"  # type: ignore[index]


async def test_page_and_assets_are_served_with_types_and_headers(tiny_model: Path) -> None:
    async with serve(settings_for(tiny_model)) as (_, client):
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["cache-control"] == REVALIDATE
        assert_secure(page.headers)
        html = page.text
        assert "{{" not in html  # every placeholder filled
        assert 'data-api-key="none"' in html
        assert "<script>" not in html
        assert " style=" not in html
        assert 'href="/docs"' in html
        assert 'href="/metrics"' in html
        linked = dict(re.findall(r'"/static/([\w.]+)\?v=(\w+)"', html))
        assert set(linked) == {"app.js", "page.css", "favicon.svg"}

        for name, content_type in EXPECTED_TYPES.items():
            plain = await client.get(f"/static/{name}")
            assert plain.status_code == 200, name
            assert plain.headers["content-type"] == content_type
            assert plain.headers["cache-control"] == REVALIDATE
            assert_secure(plain.headers)
            if name in linked:  # the versioned URL the page uses is cached for good
                versioned = await client.get(f"/static/{name}?v={linked[name]}")
                assert versioned.headers["cache-control"] == IMMUTABLE
                assert versioned.content == plain.content
            again = await client.get(
                f"/static/{name}", headers={"If-None-Match": plain.headers["etag"]}
            )
            assert again.status_code == 304
            assert again.content == b""


async def test_unknown_static_files_are_404_in_the_api_shape(tiny_model: Path) -> None:
    async with serve(settings_for(tiny_model)) as (_, client):
        for path in ("/static/nope.js", "/static/index.html", "/static/..%2Fmain.py"):
            response = await client.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "not_found"


async def test_page_says_when_an_api_key_is_needed(tiny_model: Path) -> None:
    async with serve(settings_for(tiny_model, api_key="s3cret")) as (_, client):
        page = await client.get("/")  # the page itself is public: it holds no secret
        assert page.status_code == 200
        assert 'data-api-key="required"' in page.text
        assert "s3cret" not in page.text


@pytest.mark.parametrize("path", ["/", "/static/app.js"])
async def test_ui_false_turns_the_page_off(tiny_model: Path, path: str) -> None:
    async with serve(settings_for(tiny_model, ui=False)) as (_, client):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        assert (await client.get("/health/live")).status_code == 200


def test_densenet_ui_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().ui is True
    monkeypatch.setenv("DENSENET_UI", "false")
    assert Settings().ui is False
