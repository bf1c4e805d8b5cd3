"""The gRPC front's life with the process: the drain, overload and deadlines, the API key,
batches shared with REST, and its port (real `python -m app` processes)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from app.web.grpc.stubs import health_pb2, health_pb2_grpc
from tests import images
from tests.server import Server, metric, running, start, wait_until
from tests.slow_model import calibrated_slow_model

pytestmark = pytest.mark.slow
IN_PROGRESS = "classifier_requests_in_progress"
ADMITTED = 'classifier_admitted_images{model="slow",version="1"}'


@contextmanager
def channel_to(server: Server) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    assert server.grpc_address is not None
    with grpc.insecure_channel(server.grpc_address) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def ones_request(model: str = "slow") -> service_pb2.ModelInferRequest:
    """A photo-like tensor: the slow model spins on it (zeros would cost nothing)."""
    request = service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name="input", datatype="FP32", shape=[1, 3, 224, 224])
    request.raw_input_contents.append(np.ones((1, 3, 224, 224), "<f4").tobytes())
    return request


def refused(call: grpc.Future) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call.result()
    return caught.value


def test_drain_answers_calls_in_flight_and_refuses_new_ones(tmp_path: Path) -> None:
    model = calibrated_slow_model(tmp_path / "slow.onnx", seconds=1.0)
    with running(model, max_batch_size=1, shutdown_grace_s=60) as (process, url):
        with channel_to(process) as inference:
            in_flight = [inference.ModelInfer.future(ones_request(), timeout=60) for _ in range(3)]
            wait_until(lambda: metric(url, IN_PROGRESS) == 3, what="three calls accepted")
            process.send_signal(signal.SIGTERM)
            wait_until(lambda: "draining" in process.output(), what="the drain began")
            late = refused(inference.ModelInfer.future(ones_request(), timeout=30))
            assert late.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
            assert late.details().startswith("shutting_down: ")  # type: ignore[attr-defined]
            assert ("retry-after", "5") in late.trailing_metadata()  # type: ignore[attr-defined]
            ready = inference.ServerReady(service_pb2.ServerReadyRequest(), timeout=10)
            assert not ready.ready
            assert process.grpc_address is not None
            with grpc.insecure_channel(process.grpc_address) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                status = health.Check(health_pb2.HealthCheckRequest(), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
            for call in in_flight:
                assert call.result().outputs[0].shape == [1, 3]
        assert process.wait(timeout=60) == 0
        assert "Traceback" not in process.output()


def test_overload_and_deadlines_are_unavailable_and_deadline_exceeded(tmp_path: Path) -> None:
    model = calibrated_slow_model(tmp_path / "slow.onnx", seconds=2.0)
    with (
        running(model, max_batch_size=1, max_queue_size=1) as (process, url),
        channel_to(process) as inference,
    ):
        running_call = inference.ModelInfer.future(ones_request(), timeout=60)
        wait_until(
            lambda: metric(url, IN_PROGRESS) == 1 and metric(url, ADMITTED) == 0,
            what="the first call running",
        )
        waiting = inference.ModelInfer.future(ones_request(), timeout=60)
        wait_until(lambda: metric(url, ADMITTED) == 1, what="the second call queued")
        overloaded = refused(inference.ModelInfer.future(ones_request(), timeout=30))
        assert overloaded.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        assert overloaded.details().startswith("overloaded: ")  # type: ignore[attr-defined]
        trailers = dict(overloaded.trailing_metadata())  # type: ignore[attr-defined]
        assert (trailers["retry-after"], trailers["grpc-retry-pushback-ms"]) == ("1", "1000")
        assert running_call.result().model_name == waiting.result().model_name == "slow"
        # The request's own `timeout` parameter (microseconds) is a deadline the server keeps.
        own = ones_request()
        own.parameters["timeout"].int64_param = 300_000
        late = refused(inference.ModelInfer.future(own, timeout=30))
        assert late.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
        assert "the client's deadline (0.3 s)" in late.details()  # type: ignore[attr-defined]
        gone = refused(inference.ModelInfer.future(ones_request(), timeout=0.5))
        assert gone.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
        wait_until(lambda: metric(url, IN_PROGRESS) == 0, what="abandoned calls released")
        ready = inference.ServerReady(service_pb2.ServerReadyRequest(), timeout=10)
        assert ready.ready


def test_the_api_key_is_bearer_metadata(tiny_model: Path) -> None:
    with (
        running(tiny_model, api_key="s3cret key") as (process, _),
        channel_to(process) as inference,
    ):
        request = ones_request("densenet-tiny")
        with pytest.raises(grpc.RpcError) as caught:
            inference.ModelInfer(request, timeout=30)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
        assert "unauthorized" in caught.value.details()  # type: ignore[attr-defined]
        wrong = [("authorization", "Bearer s3cret")]
        with pytest.raises(grpc.RpcError):
            inference.ModelInfer(request, metadata=wrong, timeout=30)
        key = [("authorization", "Bearer s3cret key")]
        assert inference.ModelInfer(request, metadata=key, timeout=30).model_name == "densenet-tiny"
        # Readiness and metadata stay open (DENSENET_PROTECT_OPS_ENDPOINTS is off).
        assert inference.ServerReady(service_pb2.ServerReadyRequest(), timeout=10).ready
        metadata = inference.ModelMetadata(service_pb2.ModelMetadataRequest(name="densenet-tiny"))
        assert metadata.name == "densenet-tiny"


def test_a_grpc_and_a_rest_request_share_one_batch(tiny_model: Path) -> None:
    """The batch waits (up to a minute) until it holds two images: one from each front."""
    with (
        running(tiny_model, max_batch_size=2, max_batch_delay_ms=60_000) as (process, url),
        channel_to(process) as inference,
    ):
        request = service_pb2.ModelInferRequest(model_name="densenet-tiny")
        request.inputs.add(name="image", datatype="BYTES", shape=[1])
        request.raw_input_contents.append(len(images.jpeg()).to_bytes(4, "little") + images.jpeg())
        from_grpc = inference.ModelInfer.future(request, timeout=90)
        from_rest = httpx.post(f"{url}/classify", files={"file": images.png()}, timeout=90)
        assert from_rest.status_code == 200
        assert from_grpc.result().model_name == "densenet-tiny"
        stats = httpx.get(f"{url}/v2/models/densenet-tiny/stats").json()["model_stats"][0]
        assert (stats["inference_count"], stats["execution_count"]) == (2, 1)
        assert [b["batch_size"] for b in stats["batch_stats"]] == [2]


def test_a_taken_grpc_port_stops_the_start_with_one_line(tiny_model: Path) -> None:
    with running(tiny_model) as (first, _):
        assert first.grpc_address is not None
        taken = first.grpc_address.rsplit(":", 1)[1]
        second, _ = start(tiny_model, grpc_port=taken)
        assert second.wait(timeout=60) == 1
        output = second.output()
        assert f"cannot listen for gRPC on 127.0.0.1:{taken}" in output
        assert "Traceback" not in output


def test_the_grpc_front_can_be_turned_off(tiny_model: Path) -> None:
    with running(tiny_model, grpc_port=0) as (process, url):
        assert httpx.get(f"{url}/health/ready").status_code == 200
        assert "gRPC on" not in process.output()
