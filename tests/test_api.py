"""The real app over HTTP (httpx), on a real ONNX Runtime session of a small DenseNet."""

from __future__ import annotations

import asyncio
import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.batching import DynamicBatcher
from app.pipeline import RANDOM_WEIGHTS_WARNING
from app.web.app import create_app
from tests import images
from tests.conftest import load_engine, serve, settings_for, wait_until
from tests.engines import ControlledEngine

JPEG = images.jpeg()


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    error: dict[str, str] = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    return error


async def test_classify_multipart(client: httpx.AsyncClient) -> None:
    response = await client.post("/classify", files={"file": ("cat.jpg", JPEG, "image/jpeg")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "densenet-tiny"
    predictions = body["predictions"]
    assert len(predictions) == 5
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0 < p < 1 for p in probabilities)
    assert len({p["class_index"] for p in predictions}) == 5
    assert set(body["timings"]) == {"queue_ms", "preprocess_ms", "inference_ms", "total_ms"}
    assert body["timings"]["total_ms"] >= body["timings"]["inference_ms"]
    assert body["warnings"] == []


async def test_classify_raw_body_and_top_k(client: httpx.AsyncClient) -> None:
    raw = await client.post(
        "/classify", params={"top_k": 3}, content=JPEG, headers={"content-type": "image/jpeg"}
    )
    assert raw.status_code == 200
    multipart = await client.post("/classify", params={"top_k": 3}, files={"file": JPEG})
    assert raw.json()["predictions"] == multipart.json()["predictions"]
    assert len(raw.json()["predictions"]) == 3


async def test_every_class_can_be_asked_for(client: httpx.AsyncClient) -> None:
    response = await client.post("/classify", params={"top_k": 1000}, files={"file": JPEG})
    predictions = response.json()["predictions"]
    assert len(predictions) == 1000
    assert sum(p["probability"] for p in predictions) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("top_k", ["0", "-1", "1001", "abc", "2.5"])
async def test_bad_top_k_is_422(client: httpx.AsyncClient, top_k: str) -> None:
    response = await client.post("/classify", params={"top_k": top_k}, files={"file": JPEG})
    error = assert_error(response, 422, "invalid_parameter")
    assert "top_k" in error["message"]


async def test_odd_but_valid_images_are_classified(client: httpx.AsyncClient) -> None:
    for name, data in images.cases().items():
        response = await client.post("/classify", files={"file": (f"{name}.bin", data)})
        assert response.status_code == 200, (name, response.text)


async def test_batch_items_succeed_or_fail_on_their_own(client: httpx.AsyncClient) -> None:
    files = [
        ("files", ("a.jpg", JPEG, "image/jpeg")),
        ("files", ("b.txt", b"definitely not an image", "text/plain")),
        ("files", ("c.png", images.png(), "image/png")),
    ]
    response = await client.post("/classify/batch", params={"top_k": 2}, files=files)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2]
    assert [r["filename"] for r in results] == ["a.jpg", "b.txt", "c.png"]
    assert results[1]["result"] is None
    assert results[1]["error"]["code"] == "invalid_image"
    single = await client.post("/classify", params={"top_k": 2}, files={"file": JPEG})
    assert results[0]["result"]["predictions"] == single.json()["predictions"]
    assert len(results[2]["result"]["predictions"]) == 2


async def test_batch_limits(tiny_model: Path) -> None:
    async with serve(settings_for(tiny_model, max_batch_images=2)) as (_, client):
        files = [("files", (f"{i}.jpg", JPEG)) for i in range(3)]
        assert_error(await client.post("/classify/batch", files=files), 400, "malformed_request")
        raw = await client.post(
            "/classify/batch", content=JPEG, headers={"content-type": "image/jpeg"}
        )
        assert_error(raw, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"content": b"", "headers": {"content-type": "image/jpeg"}}, 400, "invalid_image"),
        (
            {"content": b"<html></html>", "headers": {"content-type": "image/png"}},
            400,
            "invalid_image",
        ),
        (
            {"content": JPEG, "headers": {"content-type": "text/plain"}},
            415,
            "unsupported_media_type",
        ),
        ({"content": JPEG}, 415, "unsupported_media_type"),
        ({"json": {"image": "base64?"}}, 415, "unsupported_media_type"),
        ({"files": {"image": JPEG}}, 400, "missing_file"),
        ({"data": {"file": "just a string"}}, 415, "unsupported_media_type"),
        ({"files": [("file", JPEG), ("file", JPEG)]}, 400, "malformed_request"),
        ({"files": {"file": ("empty.jpg", b"")}}, 400, "invalid_image"),
        (
            {"content": b"--x\r\nnonsense", "headers": {"content-type": "multipart/form-data"}},
            400,
            "malformed_request",
        ),
        ({"content": JPEG[:3000], "headers": {"content-type": "image/jpeg"}}, 400, "invalid_image"),
    ],
    ids=[
        "empty",
        "html",
        "text_type",
        "no_type",
        "json",
        "wrong_field",
        "form_field",
        "two_files",
        "empty_file",
        "bad_boundary",
        "truncated",
    ],
)
async def test_client_errors(
    client: httpx.AsyncClient, kwargs: dict[str, object], status: int, code: str
) -> None:
    response = await client.post("/classify", **kwargs)  # type: ignore[arg-type]
    assert_error(response, status, code)
    assert (await client.post("/classify", files={"file": JPEG})).status_code == 200


async def test_upload_limit_with_and_without_content_length(tiny_model: Path) -> None:
    async with serve(settings_for(tiny_model, max_upload_bytes=100_000)) as (_, client):
        big = images.jpeg(2000, 1500, quality=95)
        assert len(big) > 100_000
        declared = await client.post(
            "/classify", content=big, headers={"content-type": "image/jpeg"}
        )
        assert_error(declared, 413, "payload_too_large")

        sent = 0

        async def endless() -> AsyncIterator[bytes]:
            nonlocal sent
            for _ in range(10_000):  # 640 MB if nobody stopped reading
                sent += 65536
                yield b"\xff" * 65536

        streamed = await client.post(
            "/classify", content=endless(), headers={"content-type": "image/jpeg"}
        )
        assert_error(streamed, 413, "payload_too_large")
        assert sent < 1_000_000
        small = images.jpeg(200, 150)
        assert (await client.post("/classify", files={"file": small})).status_code == 200


async def test_pixel_limit(tiny_model: Path) -> None:
    async with serve(settings_for(tiny_model, max_image_pixels=1_000_000)) as (_, client):
        bomb = images.encode(images.photo(10, 10).resize((2000, 1000)), "PNG")
        assert_error(await client.post("/classify", files={"file": bomb}), 413, "image_too_large")


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/nope"), 404, "not_found")
    assert_error(await client.get("/classify"), 405, "method_not_allowed")


async def test_request_id_is_echoed_or_made(client: httpx.AsyncClient) -> None:
    given = await client.get("/health/live", headers={"x-request-id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await client.post("/classify", content=b"x", headers={"content-type": "image/png"})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert made.json()["error"]["request_id"] == made.headers["x-request-id"]
    hostile = await client.get("/health/live", headers={"x-request-id": "a\tb" * 100})
    assert hostile.headers["x-request-id"] != "a\tb" * 100


async def test_health_and_model_info(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    assert (await client.get("/health/ready")).json() == {"status": "ready"}
    info = (await client.get("/model")).json()
    assert info["name"] == "densenet-tiny"
    assert info["weights"] == "checkpoint"
    assert info["input_shape"] == ["N", 3, 224, 224]
    assert info["num_classes"] == 1000
    assert info["providers"] == ["CPUExecutionProvider"]
    assert info["batching"]["max_batch_size"] == 8
    assert (await client.get("/v1/model")).json() == info


async def test_metrics_content(client: httpx.AsyncClient) -> None:
    await client.post("/classify", files={"file": JPEG})
    await client.post("/classify", content=b"junk", headers={"content-type": "image/png"})
    text = (await client.get("/metrics")).text
    for line in (
        'classifier_http_requests_total{method="POST",route="/classify",status="200"} 1.0',
        'classifier_http_requests_total{method="POST",route="/classify",status="400"} 1.0',
        'classifier_errors_total{code="invalid_image"} 1.0',
        'classifier_images_classified_total{model="densenet-tiny",version="1"} 1.0',
        'classifier_batch_size_count{model="densenet-tiny",version="1"} 1.0',
        'classifier_queue_depth{model="densenet-tiny",version="1"} 0.0',
        'classifier_admitted_images{model="densenet-tiny",version="1"} 0.0',
        'classifier_queue_limit{model="densenet-tiny",version="1"} 64.0',
        'classifier_model_ready{model="densenet-tiny",version="1"} 1.0',
        "classifier_ready 1.0",
    ):
        assert line in text, line
    for histogram in (
        "http_request_duration_seconds",
        "queue_wait_seconds",
        "inference_seconds",
        "preprocess_seconds",
        "batch_size",
    ):
        assert f"classifier_{histogram}_bucket" in text
    assert 'classifier_http_request_duration_seconds_count{route="/classify"} 2.0' in text


async def test_concurrent_requests_share_batches(tiny_model: Path) -> None:
    settings = settings_for(tiny_model, max_batch_size=8, max_batch_delay_ms=200)
    inner = load_engine(settings)
    engine = ControlledEngine(inner)
    async with serve(settings, lambda: engine) as (_app, client):
        responses = await asyncio.gather(
            *(client.post("/classify", files={"file": images.jpeg(seed=i)}) for i in range(16))
        )
        assert all(r.status_code == 200 for r in responses)
        assert sorted(engine.batch_sizes[-4:]) != [1, 1, 1, 1]
        served = [size for size in engine.batch_sizes if size > 1]
        assert sum(served) >= 8, engine.batch_sizes
        text = (await client.get("/metrics")).text
        assert 'classifier_batch_size_sum{model="densenet-tiny",version="1"} 16.0' in text
        count = float(re.search(r"classifier_batch_size_count\{[^}]*\} (\S+)", text)[1])  # type: ignore[index]
        assert count < 16


async def test_results_are_scattered_to_the_right_requests(tiny_model: Path) -> None:
    settings = settings_for(tiny_model, max_batch_delay_ms=100)
    async with serve(settings) as (_, client):
        pictures = [images.jpeg(seed=i) for i in range(6)]
        alone = [(await client.post("/classify", files={"file": p})).json() for p in pictures]
        together = await asyncio.gather(
            *(client.post("/classify", files={"file": p}) for p in pictures)
        )
        for solo, batched in zip(alone, together, strict=True):
            for a, b in zip(solo["predictions"], batched.json()["predictions"], strict=True):
                assert a["class_index"] == b["class_index"]
                assert a["probability"] == pytest.approx(b["probability"], abs=1e-6)


async def test_not_ready_until_warm(tiny_model: Path) -> None:
    settings = settings_for(tiny_model)
    engine = ControlledEngine(load_engine(settings))
    engine.gate.clear()  # warm-up blocks
    async with serve(settings, lambda: engine, wait_ready=False) as (app, client):
        assert (await client.get("/health/live")).status_code == 200
        ready = await client.get("/health/ready")
        assert_error(ready, 503, "not_ready")
        assert ready.headers["retry-after"]
        assert_error(await client.post("/classify", files={"file": JPEG}), 503, "not_ready")
        assert "classifier_ready 0.0" in (await client.get("/metrics")).text
        engine.gate.set()
        await wait_until(lambda: app.state.dataplane.ready)
        assert (await client.get("/health/ready")).status_code == 200
        assert (await client.post("/classify", files={"file": JPEG})).status_code == 200


def batcher(app: FastAPI) -> DynamicBatcher:
    return app.state.dataplane.repository.find().batcher  # type: ignore[no-any-return]


async def test_full_queue_is_503_at_once(tiny_model: Path) -> None:
    settings = settings_for(tiny_model, max_batch_size=1, max_queue_size=2, max_batch_delay_ms=0)
    engine = ControlledEngine(load_engine(settings))
    async with serve(settings, lambda: engine) as (app, client):
        engine.gate.clear()
        engine.started.clear()
        first = asyncio.ensure_future(client.post("/classify", files={"file": JPEG}))
        await asyncio.to_thread(engine.started.wait, 10)  # in flight, holding the model
        queued = [
            asyncio.ensure_future(client.post("/classify", files={"file": JPEG})) for _ in range(2)
        ]
        await wait_until(lambda: batcher(app).queue_depth == 2)
        rejected = await client.post("/classify", files={"file": JPEG})
        error = assert_error(rejected, 503, "overloaded")
        assert "queue limit" in error["message"]
        assert rejected.headers["retry-after"] == "1"
        engine.gate.set()
        for response in await asyncio.gather(first, *queued):
            assert response.status_code == 200
        assert batcher(app).queue_depth == 0


async def test_timeout_is_504_and_frees_the_queue(tiny_model: Path) -> None:
    settings = settings_for(tiny_model, request_timeout_s=0.3, max_batch_size=1)
    engine = ControlledEngine(load_engine(settings))
    async with serve(settings, lambda: engine) as (app, client):
        engine.gate.clear()
        responses = await asyncio.gather(
            *(client.post("/classify", files={"file": JPEG}) for _ in range(3))
        )
        for response in responses:
            assert_error(response, 504, "timeout")
        assert batcher(app).queue_depth == 0  # waiting ones were dropped
        engine.gate.set()
        assert (await client.post("/classify", files={"file": JPEG})).status_code == 200


async def test_inference_failure_fails_only_its_batch(tiny_model: Path) -> None:
    settings = settings_for(tiny_model)
    engine = ControlledEngine(load_engine(settings))
    async with serve(settings, lambda: engine) as (_, client):
        engine.fail_next = 1
        failed = await client.post("/classify", files={"file": JPEG})
        error = assert_error(failed, 500, "inference_failed")
        assert re.search(r"error id [0-9a-f]{12}", error["message"])
        assert "injected" not in failed.text  # no internals leak
        assert (await client.post("/classify", files={"file": JPEG})).status_code == 200


async def test_random_weights_are_announced(tiny_random_model: Path) -> None:
    async with serve(settings_for(tiny_random_model)) as (_, client):
        body = (await client.post("/classify", files={"file": JPEG})).json()
        assert body["warnings"] == [RANDOM_WEIGHTS_WARNING]
        assert (await client.get("/model")).json()["weights"] == "random"


async def test_api_key(tiny_model: Path) -> None:
    settings = settings_for(tiny_model, api_key="s3cret")
    async with serve(settings) as (_, client):
        assert_error(await client.post("/classify", files={"file": JPEG}), 401, "unauthorized")
        wrong = await client.post(
            "/classify", files={"file": JPEG}, headers={"authorization": "Bearer nope"}
        )
        assert_error(wrong, 401, "unauthorized")
        assert wrong.headers["www-authenticate"] == "Bearer"
        right = await client.post(
            "/classify", files={"file": JPEG}, headers={"authorization": "Bearer s3cret"}
        )
        assert right.status_code == 200
        assert (await client.get("/metrics")).status_code == 200
        assert (await client.get("/health/ready")).status_code == 200
    async with serve(settings_for(tiny_model, api_key="k", protect_ops_endpoints=True)) as (
        _,
        client,
    ):
        assert_error(await client.get("/metrics"), 401, "unauthorized")
        assert_error(await client.get("/model"), 401, "unauthorized")
        assert (await client.get("/health/live")).status_code == 200
        ok = await client.get("/metrics", headers={"authorization": "Bearer k"})
        assert ok.status_code == 200


async def test_draining_refuses_new_work(tiny_model: Path) -> None:
    async with serve(settings_for(tiny_model)) as (app, client):
        app.state.dataplane.drain.begin(30)
        assert_error(await client.get("/health/ready"), 503, "shutting_down")
        assert_error(await client.post("/classify", files={"file": JPEG}), 503, "shutting_down")


async def test_default_top_k_is_capped_for_models_with_few_classes(tmp_path: Path) -> None:
    from tests.test_engine import graph_model

    model = graph_model(tmp_path, ["n", 3, 224, 224], ["n", 3], meta={"labels": '["r", "g", "b"]'})
    async with serve(settings_for(model)) as (_, client):
        response = await client.post("/classify", files={"file": JPEG})
        assert response.status_code == 200, response.text
        assert [p["label"] for p in response.json()["predictions"]] != []
        assert len(response.json()["predictions"]) == 3
        too_many = await client.post("/classify", params={"top_k": 4}, files={"file": JPEG})
        assert_error(too_many, 422, "invalid_parameter")


async def test_failed_warm_up_is_reported_not_hidden(tiny_model: Path) -> None:
    settings = settings_for(tiny_model)
    engine = ControlledEngine(load_engine(settings))
    engine.fail_next = 1  # the first warm-up run fails
    fatal: list[bool] = []
    app = create_app(settings, lambda _path: engine)
    app.state.dataplane.on_fatal = lambda: fatal.append(True)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await wait_until(lambda: fatal)
            ready = await client.get("/health/ready")
            error = assert_error(ready, 503, "not_ready")
            assert "cannot be served" in error["message"]
            assert "injected" not in error["message"]
            assert "Error" not in error["message"]  # no exception class names


PYPROJECT = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()


async def test_one_version_everywhere(client: httpx.AsyncClient) -> None:
    """pyproject.toml's version is what /docs and GET /v2 say (0.1.0 vs 0.2.0 before)."""
    declared = tomllib.loads(PYPROJECT)["project"]["version"]
    assert (await client.get("/openapi.json")).json()["info"]["version"] == declared
    assert (await client.get("/v2")).json()["version"] == declared


async def test_a_dead_batch_worker_makes_the_model_not_ready(tiny_model: Path) -> None:
    """Were the task that runs a model's batches to end (a bug, a stray cancel), readiness
    must say so rather than answer 200 while every request times out."""
    async with serve(settings_for(tiny_model)) as (app, client):
        [worker] = [t for t in asyncio.all_tasks() if t.get_name() == "batcher"]
        worker.cancel()
        await wait_until(worker.done)
        ready = await client.get("/health/ready")
        assert ready.status_code == 503
        assert "stopped serving" in ready.json()["error"]["message"]
        refused = await client.post("/classify", files={"file": images.jpeg()})
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "not_ready"
        [entry] = (await client.post("/v2/repository/index")).json()
        assert entry["state"] == "UNAVAILABLE"
        metrics = (await client.get("/metrics")).text
        assert 'classifier_model_ready{model="densenet-tiny",version="1"} 0.0' in metrics
        assert "\nclassifier_ready 0.0" in metrics
        assert not app.state.dataplane.ready
