"""app/client.py, sync and async, against a real `python -m app` process over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app import client as client_module
from app.client import AsyncClient, Client, ClientError, ServerUnreachable
from model_export.models import TINY_ARCH
from model_export.photos import bundled_photo_paths
from tests import images
from tests.server import free_port, running

pytestmark = pytest.mark.slow
KEY = "client-test-key"


@pytest.fixture(scope="module")
def url(tiny_model: Path) -> Iterator[str]:
    with running(tiny_model, api_key=KEY, protect_ops_endpoints="true", grpc_port=0) as (_, u):
        yield u


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


def test_models_lists_the_served_model(url: str) -> None:
    with Client(url, api_key=KEY) as client:
        [model] = client.models()
    assert (model.name, model.version, model.default, model.ready) == (TINY_ARCH, 1, True, True)
    assert model.num_classes == 1000


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


def test_the_api_key_is_sent(url: str) -> None:
    with Client(url) as client, pytest.raises(ClientError) as refused:
        client.models()  # protect_ops_endpoints: /models needs the key too
    assert (refused.value.code, refused.value.status) == ("unauthorized", 401)


def test_no_answer_is_server_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, timeout_s=5) as client, pytest.raises(ServerUnreachable) as unreachable:
        client.models()
    assert unreachable.value.code == "unreachable"
    assert unreachable.value.status is None


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


async def test_async_no_answer_is_server_unreachable() -> None:
    async with AsyncClient(f"http://127.0.0.1:{free_port()}", timeout_s=5) as client:
        with pytest.raises(ServerUnreachable):
            await client.models()


def refusal(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": "why"}})


def drive(
    outcomes: list[httpx.Response | httpx.TransportError],
) -> tuple[list[client_module._Call[object]], ClientError]:
    """Run one classify exchange on the given outcomes: the requests it made, and the error
    it ended with."""
    call = client_module._classify_call(b"image", "m", None, None)
    exchange = client_module._exchange("http://service", call)
    sent = [next(exchange)]
    for outcome in outcomes:
        try:
            sent.append(exchange.send(outcome))
        except ClientError as end:
            return sent, end
    raise AssertionError("the exchange wants more")


def test_an_answer_lost_to_a_reset_upload_is_asked_for_again_without_the_image() -> None:
    """The service refuses before reading the body and closes; a reset can lose that answer
    (seen with a 100 KB photo and top_k=0). A second ask without the image gets it."""
    reset = httpx.ReadError("connection reset")
    [first, probe], end = drive([reset, refusal(404, "model_not_found")])
    assert first.files is not None
    assert probe.files is None
    assert probe.params == first.params == {"model": "m"}
    assert (end.code, end.status) == ("model_not_found", 404)
    _, fine = drive([reset, refusal(415, "unsupported_media_type")])
    assert fine.code == "upload_failed"
    _, gone = drive([reset, httpx.ConnectError("refused")])
    assert isinstance(gone, ServerUnreachable)


def test_no_connection_or_a_timeout_is_not_asked_again() -> None:
    for error in (httpx.ConnectError("refused"), httpx.ReadTimeout("slow")):
        sent, end = drive([error])
        assert len(sent) == 1
        assert isinstance(end, ServerUnreachable)
