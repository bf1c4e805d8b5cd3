"""app/client.py, sync and async: against a real `python -m app` process over HTTP, and
through a fake transport for the network faults a real server cannot be made to show."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.client import AsyncClient, Client, ClientError, ServerUnreachable, Timings
from app.predictions import Prediction
from model_export.models import TINY_ARCH
from model_export.photos import bundled_photo_paths
from tests import images
from tests.server import free_port, running

slow = pytest.mark.slow  # a real server process
KEY = "client-test-key"


@pytest.fixture(scope="module")
def url(tiny_model: Path) -> Iterator[str]:
    with running(tiny_model, api_key=KEY, protect_ops_endpoints="true", grpc_port=0) as (_, u):
        yield u


@slow
def test_classify_a_path_and_bytes(url: str) -> None:
    photo = bundled_photo_paths()[0]
    with Client(url, api_key=KEY) as client:
        from_path = client.classify(photo, top_k=3)
        from_bytes = client.classify(photo.read_bytes(), top_k=3)
    assert (from_path.model, from_path.version) == (TINY_ARCH, 1)
    assert len(from_path.predictions) == 3
    assert from_path.predictions == from_bytes.predictions
    probabilities = [p.probability for p in from_path.predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    assert from_path.timings.total_ms > 0


@slow
def test_models_lists_the_served_model(url: str) -> None:
    with Client(url, api_key=KEY) as client:
        [model] = client.models()
    assert (model.name, model.version, model.default, model.ready) == (TINY_ARCH, 1, True, True)
    assert model.num_classes == 1000


@slow
def test_refusals_carry_the_services_code_status_and_request_id(url: str) -> None:
    with Client(url, api_key=KEY) as client:
        with pytest.raises(ClientError) as bad_image:
            client.classify(b"not an image")
        with pytest.raises(ClientError) as no_model:
            client.classify(images.jpeg(), model="no-such-model")
    assert (bad_image.value.code, bad_image.value.status) == ("invalid_image", 400)
    assert bad_image.value.request_id
    assert (no_model.value.code, no_model.value.status) == ("model_not_found", 404)
    assert "no-such-model" in no_model.value.message


@slow
def test_the_api_key_is_sent(url: str) -> None:
    with Client(url) as client, pytest.raises(ClientError) as refused:
        client.models()  # protect_ops_endpoints: /models needs the key too
    assert (refused.value.code, refused.value.status) == ("unauthorized", 401)


@slow
def test_no_answer_is_server_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, timeout_s=5) as client, pytest.raises(ServerUnreachable) as unreachable:
        client.models()
    assert unreachable.value.code == "unreachable"
    assert unreachable.value.status is None


@slow
async def test_async_client_answers_as_the_sync_one(url: str) -> None:
    photo = bundled_photo_paths()[1]
    with Client(url, api_key=KEY) as client:
        expected = client.classify(photo, top_k=2)
    async with AsyncClient(url, api_key=KEY) as client:
        result = await client.classify(photo, top_k=2)
        models = await client.models()
        with pytest.raises(ClientError) as refused:
            await client.classify(photo, top_k=0)
    assert result.predictions == expected.predictions
    assert [m.name for m in models] == [TINY_ARCH]
    assert (refused.value.code, refused.value.status) == ("invalid_parameter", 422)


@slow
async def test_async_no_answer_is_server_unreachable() -> None:
    async with AsyncClient(f"http://127.0.0.1:{free_port()}", timeout_s=5) as client:
        with pytest.raises(ServerUnreachable):
            await client.models()


class FakeService:
    """An `httpx.MockTransport` handler: answers the requests it gets with `replies` in
    order (a response, or a transport error raised as the network would) and keeps them."""

    def __init__(self, *replies: httpx.Response | httpx.TransportError) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0)
        if isinstance(reply, httpx.TransportError):
            raise reply
        return reply

    def client(self) -> Client:
        return Client("http://service", transport=httpx.MockTransport(self))


def refusal(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": "why"}})


def carries_the_image(request: httpx.Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


PREDICTION = {"label": "tabby", "class_index": 281, "probability": 0.9}
TIMINGS = {"queue_ms": 1.0, "preprocess_ms": 2.0, "inference_ms": 3.0, "total_ms": 7.0}
CLASSIFICATION = {"model": "m", "version": 1, "predictions": [PREDICTION], "timings": TIMINGS}


def test_keys_the_service_adds_later_are_ignored() -> None:
    later = {
        **CLASSIFICATION,
        "predictions": [{**PREDICTION, "logit": 4.2}],
        "timings": {**TIMINGS, "postprocess_ms": 0.1},
        "trace_id": "abc",
    }
    with FakeService(httpx.Response(200, json=later)).client() as client:
        result = client.classify(b"image")
    assert result.timings == Timings(1.0, 2.0, 3.0, 7.0)
    assert result.predictions == (Prediction(label="tabby", class_index=281, probability=0.9),)
    assert result.warnings == ()  # optional: absent is none


def test_models_ignore_added_keys_and_a_missing_arch() -> None:
    model = {
        "name": "m",
        "version": 2,
        "default": True,
        "latest": True,
        "ready": True,
        "weights": "random",
        "precision": "int8",
        "runtime": "openvino",
        "num_classes": 1000,
        "replicas": 3,
    }
    with FakeService(httpx.Response(200, json={"models": [model]})).client() as client:
        [info] = client.models()
    assert (info.name, info.version, info.arch, info.precision) == ("m", 2, None, "int8")


def test_an_answer_missing_what_a_client_needs_is_unexpected_response() -> None:
    partial = {**CLASSIFICATION, "timings": {"total_ms": 7.0}}
    client = FakeService(httpx.Response(200, json=partial)).client()
    with client, pytest.raises(ClientError) as unexpected:
        client.classify(b"image")
    assert unexpected.value.code == "unexpected_response"


def test_an_answer_lost_to_a_reset_upload_is_asked_for_again_without_the_image() -> None:
    """The service refuses before reading the body and closes; a reset can lose that answer
    (seen with a 100 KB photo and top_k=0). A second ask without the image gets it."""
    reset = httpx.ReadError("connection reset")
    service = FakeService(reset, refusal(404, "model_not_found"))
    with service.client() as client, pytest.raises(ClientError) as refused:
        client.classify(b"image", model="m")
    first, probe = service.requests
    assert carries_the_image(first)
    assert not carries_the_image(probe)
    assert dict(probe.url.params) == dict(first.url.params) == {"model": "m"}
    assert (refused.value.code, refused.value.status) == ("model_not_found", 404)

    client = FakeService(reset, refusal(415, "unsupported_media_type")).client()
    with client, pytest.raises(ClientError) as fine:
        client.classify(b"image")
    assert fine.value.code == "upload_failed"

    client = FakeService(reset, httpx.ConnectError("refused")).client()
    with client, pytest.raises(ServerUnreachable):
        client.classify(b"image")


async def test_the_async_client_asks_again_as_the_sync_one() -> None:
    service = FakeService(httpx.WriteError("broken pipe"), refusal(401, "unauthorized"))
    transport = httpx.MockTransport(service)
    async with AsyncClient("http://service", transport=transport) as client:
        with pytest.raises(ClientError) as refused:
            await client.classify(b"image")
    assert [carries_the_image(r) for r in service.requests] == [True, False]
    assert refused.value.code == "unauthorized"


def test_no_connection_or_a_timeout_is_not_asked_again() -> None:
    for error in (httpx.ConnectError("refused"), httpx.ReadTimeout("slow")):
        service = FakeService(error)
        with service.client() as client, pytest.raises(ServerUnreachable):
            client.classify(b"image")
        assert len(service.requests) == 1
