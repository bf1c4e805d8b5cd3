"""The interactive docs work in a real browser: upload a photo through Swagger UI."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests import images
from tests.server import running

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None and not os.environ.get("CI"),
        reason="Debian chromium not installed (make test installs it; CI requires it)",
    ),
]


def test_swagger_ui_classifies_an_uploaded_photo(tiny_model: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "CI must have chromium: scripts/install-chromium.sh"
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(images.jpeg())
    with running(tiny_model) as (_, url), sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page()
            external: list[str] = []
            page.on(
                "request",
                lambda r: (
                    None
                    if r.url.startswith(url) or r.url.startswith("data:")
                    else external.append(r.url)
                ),
            )
            page.goto(f"{url}/docs")
            operation = page.locator("#operations-classification-classify_classify_post")
            operation.locator(".opblock-summary").click()
            operation.get_by_role("button", name="Try it out").click()
            operation.locator('input[type="file"]').first.set_input_files(str(photo))
            operation.get_by_role("button", name="Execute").click()
            body = operation.locator(".responses-wrapper .live-responses-table .microlight")
            body.first.wait_for(timeout=30_000)
            text = body.first.inner_text()
            page.screenshot(path=str(tmp_path / "docs.png"), full_page=False)
        finally:
            browser.close()
    assert '"predictions"' in text
    assert '"class_index"' in text
    assert external == []  # the docs load nothing from a CDN
