"""`python -m app` as a real process: refusing bad models, and draining on SIGTERM."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from model_export.models import TINY_ARCH
from tests import images
from tests.conftest import run_cli
from tests.server import metric, running, startup_failure, wait_until

QUEUE_DEPTH = 'classifier_queue_depth{model="densenet-tiny",version="1"}'
IN_UPLOAD = "classifier_upload_bytes"

pytestmark = pytest.mark.slow


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
    """Accepted work survives SIGTERM: six requests waiting in the queue (a 20 s batch
    delay keeps them there) and one whose body is still uploading."""
    photo = images.jpeg()
    with running(tiny_model, max_batch_delay_ms=20_000, max_batch_size=64, shutdown_grace_s=20) as (
        process,
        url,
    ):
        port = int(url.rsplit(":", 1)[1])
        results: list[int] = []

        def send() -> None:
            response = httpx.post(f"{url}/classify", files={"file": photo}, timeout=30)
            results.append(response.status_code)

        senders = [threading.Thread(target=send) for _ in range(6)]
        for sender in senders:
            sender.start()
        uploader = socket.create_connection(("127.0.0.1", port), timeout=30)
        uploader.sendall(
            b"POST /classify HTTP/1.1\r\nHost: test\r\nContent-Type: image/jpeg\r\n"
            + f"Content-Length: {len(photo)}\r\n\r\n".encode()
            + photo[:1000]
        )
        with httpx.Client(base_url=url, timeout=5) as client:
            wait_until(lambda: metric(url, QUEUE_DEPTH) == 6.0, what="6 queued")
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            wait_until(lambda: "draining" in process.output(), what="drain logged")
            ready = client.get("/health/ready")
            assert ready.status_code == 503
            assert ready.json()["error"]["code"] == "shutting_down"
            late = client.post("/classify", files={"file": photo})
            assert late.status_code == 503
            assert late.headers["retry-after"]
        for sender in senders:
            sender.join(timeout=30)
        assert results == [200] * 6
        assert time.monotonic() - started < 10  # the drain does not wait out the batch delay
        assert process.poll() is None  # still draining: the upload is not finished
        uploader.sendall(photo[1000:])
        reply = b""
        while b"}" not in reply.rsplit(b"\r\n\r\n", 1)[-1]:
            chunk = uploader.recv(65536)
            if not chunk:
                break
            reply += chunk
        uploader.close()
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        assert b'"predictions"' in reply
        assert process.wait(timeout=30) == 0
        output = process.output()
        assert "draining" in output
        assert "drained" in output


def batch_of_one_model(path: Path) -> Path:
    """Declares a dynamic batch but reshapes to a fixed [1, 3]: loads, fails at batch 8."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 224, 224])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])
    shape = numpy_helper.from_array(np.array([1, 3], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["p"]),
        helper.make_node("Reshape", ["p", "shape"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=[shape])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("warmup_runs", [2, 0])
def test_model_that_fails_warm_up_stops_the_process(tmp_path: Path, warmup_runs: int) -> None:
    """Even with DENSENET_WARMUP_RUNS=0 one inference runs before ready."""
    model = batch_of_one_model(tmp_path / "b1.onnx")
    output = startup_failure(model, max_batch_size=8, warmup_runs=warmup_runs)
    assert "warm-up failed" in output


def test_client_aborting_an_upload_is_not_a_server_error(tiny_model: Path) -> None:
    with running(tiny_model) as (_, url):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as aborting:
            aborting.sendall(
                b"POST /classify HTTP/1.1\r\nHost: test\r\nContent-Type: image/jpeg\r\n"
                b"Content-Length: 100000\r\n\r\n" + b"\xff" * 1000
            )
            wait_until(lambda: metric(url, IN_UPLOAD) == 1000, what="upload under way")
        disconnected = 'classifier_errors_total{code="client_disconnected"}'
        wait_until(lambda: metric(url, disconnected) == 1.0, what="disconnect counted")
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
        assert 'classifier_errors_total{code="client_disconnected"} 1.0' in metrics
        assert "internal_error" not in metrics
        assert 'status="500"' not in metrics
        assert httpx.post(f"{url}/classify", files={"file": images.jpeg()}).status_code == 200


def test_a_repository_of_two_densenets_serves_both(tmp_path: Path, tiny_model: Path) -> None:
    """`python -m app` on DIR/<name>/<version>/model.onnx with two exported DenseNets."""
    root = tmp_path / "repo"
    for name, seed in (("tiny-a", "1"), ("tiny-b", "2")):
        (root / name / "1").mkdir(parents=True)
        exported = run_cli(
            "export",
            "--arch",
            TINY_ARCH,
            "--weights",
            "random",
            "--seed",
            seed,
            "-o",
            root / name / "1" / "model.onnx",
        )
        assert exported.returncode == 0, exported.stderr
    (root / "tiny-b" / "2").mkdir()
    shutil.copy(tiny_model, root / "tiny-b" / "2" / "model.onnx")
    with running(None, model_repository=root, default_model="tiny-a") as (process, url):
        models = httpx.get(f"{url}/models", timeout=5).json()
        assert models["default_model"] == "tiny-a"
        assert [(m["name"], m["version"]) for m in models["models"]] == [
            ("tiny-a", 1),
            ("tiny-b", 1),
            ("tiny-b", 2),
        ]
        answers = {}
        for params in ({}, {"model": "tiny-b", "version": 1}, {"model": "tiny-b"}):
            response = httpx.post(
                f"{url}/classify", files={"file": images.jpeg()}, params=params, timeout=30
            )
            assert response.status_code == 200, response.text
            body = response.json()
            answers[(body["model"], body["version"])] = json.dumps(body["predictions"])
        assert set(answers) == {("tiny-a", 1), ("tiny-b", 1), ("tiny-b", 2)}
        assert len(set(answers.values())) > 1  # three different weights, not one model thrice
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    output = process.output()
    assert "serving tiny-a v1" in output
    assert "serving tiny-b v2" in output
