"""The page at / in a real browser (Debian's Chromium) against the real service process."""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import matplotlib.cbook
import pytest
import skimage

from tests import images
from tests.conftest import run_cli
from tests.server import running

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None and not os.environ.get("CI"),
        reason="Debian chromium not installed (make test installs it; CI requires it)",
    ),
]
SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
GRACE_HOPPER = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
CHELSEA, COFFEE, ASTRONAUT = (SKIMAGE_DATA / f"{n}.png" for n in ("chelsea", "coffee", "astronaut"))
TIMEOUT_MS = 30_000
ROWS = """card => [...card.querySelectorAll('.prediction')].map(
    row => [row.querySelector('.label').textContent, row.querySelector('.percent').textContent])"""


def percent(probability: float) -> str:
    """What the page shows for a probability (cards.js formatPercent)."""
    value = probability * 100
    return f"{value:.{2 if value < 10 else 1}f}%"


def api_rows(
    url: str, photo: Path, top_k: int, headers: dict[str, str] | None = None, **params: object
) -> list:
    response = httpx.post(
        f"{url}/classify",
        params={"top_k": top_k, **params},
        files={"file": (photo.name, photo.read_bytes())},
        headers=headers,
        timeout=30,
    )
    response.raise_for_status()
    return [[p["label"], percent(p["probability"])] for p in response.json()["predictions"]]


@dataclass
class Session:
    """A page on the service, with every request it made (for origin and header checks)."""

    page: Any
    url: str
    requests: list[Any] = field(default_factory=list)

    def foreign(self) -> list[str]:
        return [r.url for r in self.requests if not r.url.startswith((self.url, "blob:"))]

    def cards(self) -> Any:
        return self.page.locator("#cards > .card")

    def wait_done(self, count: int) -> None:
        """Until `count` cards show an answer (or an error) and none is still busy."""
        self.page.locator("#cards > .card:not([aria-busy])").nth(count - 1).wait_for(
            timeout=TIMEOUT_MS
        )
        self.page.wait_for_function(
            "n => document.querySelectorAll('#cards > .card').length === n"
            " && !document.querySelector('#cards > .card[aria-busy]')",
            arg=count,
            timeout=TIMEOUT_MS,
        )

    def choose(self, *files: Path) -> None:
        self.page.locator("#files").set_input_files([str(f) for f in files])

    def transfer(self, event: str, photo: Path) -> None:
        """Drop a file on the page, or paste one, as the browser delivers it."""
        self.page.evaluate(
            """([event, name, data]) => {
                const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
                const transfer = new DataTransfer();
                transfer.items.add(new File([bytes], name, {type: 'image/png'}));
                const init = {bubbles: true, cancelable: true};
                document.body.dispatchEvent(event === 'drop'
                    ? new DragEvent('drop', {...init, dataTransfer: transfer})
                    : new ClipboardEvent('paste', {...init, clipboardData: transfer}));
            }""",
            [event, photo.name, base64.b64encode(photo.read_bytes()).decode()],
        )

    def wait_models_loaded(self) -> None:
        self.page.wait_for_function(
            "() => !document.querySelector('#model option:not([value])')", timeout=TIMEOUT_MS
        )


@contextmanager
def browse(url: str, width: int = 1280) -> Iterator[Session]:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "CI must have chromium: scripts/install-chromium.sh"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            session = Session(page, url)
            page.on("request", lambda request: session.requests.append(request))
            # A listener from the start turns on file chooser interception before any
            # click: enabling it inside expect_file_chooser can lose the race with the key.
            page.on("filechooser", lambda chooser: None)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on(
                "console",
                lambda m: errors.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource")
                else None,
            )  # fmt: skip
            page.goto(url + "/")
            yield session
            assert errors == []  # no script error, no CSP violation
        finally:
            browser.close()


def test_chosen_dropped_and_pasted_photos_show_the_api_top_k(tiny_random_model: Path) -> None:
    with running(tiny_random_model) as (_, url), browse(url) as s:
        s.wait_models_loaded()
        assert s.page.locator("#model option").all_inner_texts() == ["densenet-tiny v1 (default)"]
        s.page.get_by_role("button", name="Choose images").focus()  # keyboard only
        with s.page.expect_file_chooser() as chooser:
            s.page.keyboard.press("Enter")
        assert chooser.value.is_multiple()
        chooser.value.set_files(str(GRACE_HOPPER))
        s.wait_done(1)
        card = s.cards().first
        assert card.locator(".file-name").inner_text() == "grace_hopper.jpg"
        assert card.evaluate(ROWS) == api_rows(url, GRACE_HOPPER, 5)
        assert "ms in all" in card.locator(".timings").inner_text()
        banner = s.page.locator("#warnings")
        assert banner.is_visible()
        assert "random, untrained weights" in banner.inner_text()

        s.page.locator("#top-k").fill("3")
        s.page.locator("#top-k").press("Enter")  # a change re-sends the images shown
        s.page.wait_for_function(
            "() => document.querySelectorAll('#cards .prediction:not(.placeholder)').length === 3"
            " && !document.querySelector('#cards > .card[aria-busy]')",
            timeout=TIMEOUT_MS,
        )
        assert card.evaluate(ROWS) == api_rows(url, GRACE_HOPPER, 3)

        s.transfer("drop", CHELSEA)
        s.wait_done(2)
        assert s.cards().first.locator(".file-name").inner_text() == "chelsea.png"
        assert s.cards().first.evaluate(ROWS) == api_rows(url, CHELSEA, 3)

        s.transfer("paste", COFFEE)
        s.wait_done(3)
        assert s.cards().first.locator(".file-name").inner_text() == "coffee.png"
        assert s.cards().first.evaluate(ROWS) == api_rows(url, COFFEE, 3)

        s.page.set_viewport_size({"width": 360, "height": 800})
        assert s.page.evaluate("document.documentElement.scrollWidth") <= 360  # no sideways scroll
        assert s.foreign() == []


def card_error(card: Any) -> dict[str, str]:
    return {
        "code": card.locator(".error-code").inner_text(),
        "message": card.locator(".error-message").inner_text(),
        "advice": card.locator(".error-advice").inner_text(),
        "meta": card.locator(".card-meta").inner_text(),
    }


def api_error(url: str, upload: Path) -> dict[str, str]:
    response = httpx.post(f"{url}/classify", files={"file": (upload.name, upload.read_bytes())})
    error: dict[str, str] = response.json()["error"]
    return {"code": error["code"], "message": error["message"], "status": str(response.status_code)}


def test_errors_are_shown_on_the_card_and_three_images_give_three_cards(
    tiny_model: Path, tmp_path: Path
) -> None:
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("a text file renamed to .jpg\n")
    too_large = tmp_path / "large.jpg"
    too_large.write_bytes(images.jpeg(1000, 800))  # over the limit set below
    with running(tiny_model, max_image_pixels=500_000) as (_, url), browse(url) as s:
        s.wait_models_loaded()
        s.choose(not_an_image, too_large)
        s.wait_done(2)
        for card, upload, code in (
            (s.cards().nth(0), not_an_image, "invalid_image"),
            (s.cards().nth(1), too_large, "image_too_large"),
        ):
            expected, shown = api_error(url, upload), card_error(card)
            assert card.locator(".card-error").is_visible()
            assert shown["code"] == expected["code"] == code
            assert shown["message"] == expected["message"]
            assert f"HTTP {expected['status']}" in shown["meta"]
            assert card.locator(".predictions").is_hidden()

        s.choose(GRACE_HOPPER, COFFEE, ASTRONAUT)
        s.wait_done(5)
        names = s.page.locator("#cards > .card .file-name").all_inner_texts()
        assert names == [
            "grace_hopper.jpg",
            "coffee.png",
            "astronaut.png",
            "notes.jpg",
            "large.jpg",
        ]
        for index, photo in enumerate((GRACE_HOPPER, COFFEE, ASTRONAUT)):
            assert s.cards().nth(index).evaluate(ROWS) == api_rows(url, photo, 5)
        posts = [r for r in s.requests if r.method == "POST"]
        assert [r.url.split("?")[0] for r in posts] == [f"{url}/classify"] * 5
        assert s.foreign() == []


def test_overloaded_shows_the_retry_advice_and_try_again_resends(tiny_model: Path) -> None:
    """A 503 from a full queue cannot be caused on demand, so this one answer is injected."""
    overloaded = {"code": "overloaded", "message": "the queue is full (64 images waiting)"}
    with running(tiny_model) as (_, url), browse(url) as s:
        s.wait_models_loaded()
        s.page.route(
            "**/classify?*",
            lambda route: route.fulfill(
                status=503,
                headers={"Retry-After": "3"},
                json={"error": {**overloaded, "request_id": "abc123"}},
            ),
        )
        s.choose(GRACE_HOPPER)
        s.wait_done(1)
        card = s.cards().first
        shown = card_error(card)
        assert {"code": shown["code"], "message": shown["message"]} == overloaded
        assert "try again in 3 s" in shown["advice"]
        assert "abc123" in card.locator(".error-id").inner_text()

        s.page.unroute("**/classify?*")
        card.get_by_role("button", name="Try again").click()
        s.wait_done(1)
        assert card.locator(".card-error").is_hidden()
        assert card.evaluate(ROWS) == api_rows(url, GRACE_HOPPER, 5)


def test_a_second_model_from_the_picker_shows_its_labels(tiny_model: Path, tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    for name, version, labelled in (("alpha", 1, False), ("beta", 1, True), ("beta", 2, True)):
        target = repository / name / str(version) / "model.onnx"
        target.parent.mkdir(parents=True)
        if not labelled:  # ImageNet's labels
            shutil.copy(tiny_model, target)
            continue
        labels = tmp_path / f"{name}-{version}.txt"
        labels.write_text("".join(f"{name} v{version} class {i}\n" for i in range(1000)))
        result = run_cli("annotate", tiny_model, "--labels", labels, "-o", target)
        assert result.returncode == 0, result.stderr
    with (
        running(None, model_repository=repository, default_model="alpha") as (_, url),
        browse(url) as s,
    ):
        s.wait_models_loaded()
        listed = httpx.get(f"{url}/models").json()["models"]
        options = s.page.locator("#model option").all_inner_texts()
        assert sorted(options) == ["alpha v1 (default)", "beta v1", "beta v2"]
        assert len(listed) == 3
        assert s.page.locator("#model option:checked").inner_text() == "alpha v1 (default)"

        s.choose(GRACE_HOPPER)
        s.wait_done(1)
        card = s.cards().first
        assert card.locator(".card-meta").inner_text() == "alpha v1"
        assert card.evaluate(ROWS) == api_rows(url, GRACE_HOPPER, 5)

        for version in (2, 1):  # choosing a model sends the images shown again
            s.page.get_by_label("Model").select_option(label=f"beta v{version}")
            card.locator(".card-meta", has_text=f"beta v{version}").wait_for(timeout=TIMEOUT_MS)
            rows = card.evaluate(ROWS)
            assert rows == api_rows(url, GRACE_HOPPER, 5, model="beta", version=version)
            assert all(label.startswith(f"beta v{version} class ") for label, _ in rows)
        sent = [r.url for r in s.requests if r.method == "POST"]
        assert "model=beta&version=2" in sent[1]
        assert "model=beta&version=1" in sent[2]
        assert s.foreign() == []


def test_labels_from_the_model_render_as_text(tiny_model: Path, tmp_path: Path) -> None:
    hostile = "<img src=x onerror=\"document.title='pwned'\"> class {}"
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(hostile.format(i) + "\n" for i in range(1000)))
    annotated = tmp_path / "hostile.onnx"
    result = run_cli("annotate", tiny_model, "--labels", labels, "-o", annotated)
    assert result.returncode == 0, result.stderr
    with running(annotated) as (_, url), browse(url) as s:
        s.wait_models_loaded()
        s.choose(GRACE_HOPPER)
        s.wait_done(1)
        rows = s.cards().first.evaluate(ROWS)
        assert rows == api_rows(url, GRACE_HOPPER, 5)
        assert all(label.startswith("<img src=x onerror=") for label, _ in rows)
        assert s.cards().first.locator("img").count() == 1  # the thumbnail, nothing parsed
        assert s.page.title() != "pwned"
        assert s.foreign() == []


def test_with_an_api_key_the_page_asks_once_and_keeps_it_in_memory(tiny_model: Path) -> None:
    key = "correct horse battery staple"
    with (
        running(tiny_model, api_key=key, protect_ops_endpoints="true") as (_, url),
        browse(url) as s,
    ):
        form = s.page.locator("#key-form")
        assert form.is_visible()
        s.page.locator("#api-key").fill("wrong key")
        s.page.locator("#api-key").press("Enter")
        s.page.locator("#model-status", has_text="needs the API key").wait_for(timeout=TIMEOUT_MS)
        assert form.is_visible()  # asked again, since the service refused it

        s.page.get_by_label("API key").fill(key)
        s.page.get_by_role("button", name="Use this key").click()
        s.wait_models_loaded()
        assert form.is_hidden()
        s.choose(GRACE_HOPPER)
        s.wait_done(1)
        bearer = {"Authorization": f"Bearer {key}"}
        assert s.cards().first.evaluate(ROWS) == api_rows(url, GRACE_HOPPER, 5, bearer)

        # Nothing was asked of the API before a key was given; each call carried it.
        api_calls = [r for r in s.requests if r.url.startswith((f"{url}/model", f"{url}/classify"))]
        sent = [r.all_headers().get("authorization") for r in api_calls]
        assert set(sent[:-1]) == {"Bearer wrong key", bearer["Authorization"]}
        assert api_calls[-1].url.startswith(f"{url}/classify?")
        assert sent[-1] == bearer["Authorization"]
        assert s.page.evaluate("localStorage.length + sessionStorage.length") == 0
        assert s.page.evaluate("document.cookie") == ""
        assert s.page.context.cookies() == []
        assert s.foreign() == []
