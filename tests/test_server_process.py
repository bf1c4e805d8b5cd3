"""`python -m app` as a real process: refusing bad models, and draining on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests import images
from tests.server import ROOT, running, start

pytestmark = pytest.mark.slow


def startup_failure(model: Path, **settings: object) -> str:
    process, _ = start(model, **settings)
    try:
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode not in (0, None)
    return output


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), (b"not onnx at all", "cannot load"), (b"", "cannot load")],
    ids=["missing", "not_onnx", "empty"],
)
def test_bad_model_file_stops_startup(tmp_path: Path, content: bytes | None, message: str) -> None:
    model = tmp_path / "model.onnx"
    if content is not None:
        model.write_bytes(content)
    output = startup_failure(model)
    assert "cannot start: " in output
    assert message in output
    assert "Traceback" not in output


def test_truncated_model_stops_startup(tmp_path: Path, tiny_model: Path) -> None:
    model = tmp_path / "truncated.onnx"
    model.write_bytes(tiny_model.read_bytes()[:5000])
    assert "cannot load" in startup_failure(model)


def test_unavailable_provider_stops_startup(tiny_model: Path) -> None:
    output = startup_failure(tiny_model, providers="CUDAExecutionProvider,CPUExecutionProvider")
    assert "CUDAExecutionProvider" in output
    assert "not available" in output


def test_invalid_setting_stops_startup(tiny_model: Path) -> None:
    output = startup_failure(tiny_model, max_batch_size="lots")
    assert "DENSENET_" in output or "max_batch_size" in output


def test_sigterm_drains_accepted_requests_then_exits_zero(tiny_model: Path) -> None:
    # A long batch delay keeps accepted requests waiting in the queue when SIGTERM lands.
    with running(tiny_model, max_batch_delay_ms=1500, max_batch_size=64, shutdown_grace_s=20) as (
        process,
        url,
    ):
        results: list[int] = []

        def send() -> None:
            response = httpx.post(f"{url}/classify", files={"file": images.jpeg()}, timeout=30)
            results.append(response.status_code)

        senders = [threading.Thread(target=send) for _ in range(6)]
        for sender in senders:
            sender.start()
        with httpx.Client(base_url=url, timeout=5) as client:
            for _ in range(100):
                metrics = client.get("/metrics").text
                if "classifier_queue_depth 6.0" in metrics:
                    break
                time.sleep(0.02)
            assert "classifier_queue_depth 6.0" in metrics
            process.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            ready = client.get("/health/ready")
            assert ready.status_code == 503
            assert ready.json()["error"]["code"] == "shutting_down"
            late = client.post("/classify", files={"file": images.jpeg()})
            assert late.status_code == 503
            assert late.headers["retry-after"]
        for sender in senders:
            sender.join(timeout=30)
        assert results == [200] * 6
        assert process.wait(timeout=30) == 0
        output = process.stdout.read()  # type: ignore[union-attr]
        assert "draining" in output
        assert "drained" in output


def test_module_entrypoint_has_help_free_start(tiny_model: Path) -> None:
    """`python -m app` takes no arguments: everything is DENSENET_* settings."""
    result = subprocess.run(
        [sys.executable, "-c", "import app.__main__"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
