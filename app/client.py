"""A small typed client of the service's HTTP API, sync (`Client`) and async (`AsyncClient`).

    with Client("http://127.0.0.1:8000") as client:
        result = client.classify(Path("cat.jpg"), top_k=3)
        print(result.predictions[0].label, result.predictions[0].probability)

Both clients build their requests and read their responses with the same functions below
(`_exchange` drives them); only the loop that sends the requests differs. Every refusal
raises `ClientError` with the service's stable error `code`, its message and the HTTP
status; a server that cannot be reached raises `ServerUnreachable` (a `ClientError` whose
status is None).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx

from app import __version__
from app.predictions import Prediction

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 60.0
Image = bytes | str | os.PathLike[str]  # the image's bytes, or the path of a file holding them
T = TypeVar("T")


class ClientError(Exception):
    """The service refused a request (`code`, `message` and `status` are the service's own),
    or the client could not get an answer at all (`status` None)."""

    def __init__(
        self, code: str, message: str, status: int | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status, self.request_id = code, message, status, request_id


class ServerUnreachable(ClientError):
    """No HTTP answer: nothing listening, an unknown host, a timeout, a dropped connection."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__("unreachable", f"no answer from {url}: {reason}")


@dataclass(frozen=True)
class Timings:
    queue_ms: float
    preprocess_ms: float
    inference_ms: float
    total_ms: float


@dataclass(frozen=True)
class Classification:
    model: str
    version: int
    predictions: tuple[Prediction, ...]
    timings: Timings
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelInfo:
    """One served model version, as GET /models describes it (the fields a client needs)."""

    name: str
    version: int
    default: bool
    latest: bool
    ready: bool
    arch: str | None
    weights: str
    precision: str
    runtime: str
    num_classes: int
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Call(Generic[T]):
    """One HTTP request and how to read its successful answer."""

    method: str
    path: str
    read: Callable[[Any], T]
    params: dict[str, str | int] | None = None
    files: dict[str, tuple[str, bytes, str]] | None = None


def _classify_call(
    image: Image, model: str | None, version: int | None, top_k: int | None
) -> _Call[Classification]:
    if isinstance(image, bytes):
        name, data = "image", image
    else:
        name, data = Path(image).name, Path(image).read_bytes()  # OSError: the caller's file
    params = {
        key: value
        for key, value in (("model", model), ("version", version), ("top_k", top_k))
        if value is not None
    }
    files = {"file": (name, data, "application/octet-stream")}
    return _Call("POST", "/classify", _read_classification, params, files)


def _read_classification(body: Any) -> Classification:
    return Classification(
        model=body["model"],
        version=body["version"],
        predictions=tuple(
            Prediction(p["class_index"], p["label"], p["probability"]) for p in body["predictions"]
        ),
        timings=_read_timings(body["timings"]),
        warnings=tuple(body.get("warnings", ())),
    )


def _read_timings(timings: Any) -> Timings:
    # By name, not Timings(**timings): a timing the service adds later must not turn every
    # answer into unexpected_response.
    return Timings(
        queue_ms=timings["queue_ms"],
        preprocess_ms=timings["preprocess_ms"],
        inference_ms=timings["inference_ms"],
        total_ms=timings["total_ms"],
    )


def _read_models(body: Any) -> list[ModelInfo]:
    return [
        ModelInfo(
            name=m["name"],
            version=m["version"],
            default=m["default"],
            latest=m["latest"],
            ready=m["ready"],
            arch=m.get("arch"),  # None: a file without arch metadata
            weights=m["weights"],
            precision=m["precision"],
            runtime=m["runtime"],
            num_classes=m["num_classes"],
            warnings=tuple(m.get("warnings", ())),
        )
        for m in body["models"]
    ]


_MODELS = _Call("GET", "/models", _read_models)


def _answer(call: _Call[T], response: httpx.Response) -> T:
    """The typed answer of a 2xx response; a `ClientError` for anything else."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success and body is not None:
        try:
            return call.read(body)
        except (KeyError, TypeError, ValueError) as exc:
            raise ClientError(
                "unexpected_response", f"{call.path} answered an unexpected body ({exc!r})"
            ) from None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and "code" in error:
        message, request_id = str(error.get("message", "")), error.get("request_id")
        raise ClientError(str(error["code"]), message, response.status_code, request_id)
    raise ClientError(
        f"http_{response.status_code}",
        f"{call.method} {call.path} answered {response.status_code} {response.reason_phrase}",
        response.status_code,
    )


_Reply = httpx.Response | httpx.TransportError  # what sending one request gives
# What the service says to a request that is fine but for its missing image.
_FINE_BUT_NO_IMAGE = frozenset({"unsupported_media_type", "missing_file"})


def _exchange(url: str, call: _Call[T]) -> Generator[_Call[Any], _Reply, T]:
    """The requests one call makes and what their outcomes mean, without I/O: both clients
    send what this yields and send back the response or the transport's error.

    The service answers a request it refuses before reading the body (wrong model, API
    key, top_k, a declared size over its limit) and closes the connection; while the image
    is still being sent, the peer's kernel may reset the connection and lose that answer.
    Asked again without the image, the service says why (read whole, nothing is lost)."""
    outcome = yield call
    if isinstance(outcome, httpx.Response):
        return _answer(call, outcome)
    lost_upload = isinstance(
        outcome, httpx.ReadError | httpx.WriteError | httpx.RemoteProtocolError
    )
    if call.files is None or not lost_upload:
        raise ServerUnreachable(url, str(outcome) or type(outcome).__name__)
    probe = yield replace(call, files=None)
    if not isinstance(probe, httpx.Response):
        raise ServerUnreachable(url, str(probe) or type(probe).__name__)
    try:
        _answer(call, probe)
    except ClientError as refusal:
        if refusal.code not in _FINE_BUT_NO_IMAGE:
            raise
    raise ClientError(
        "upload_failed",
        f"the connection closed while the image was sent ({type(outcome).__name__}); "
        "the service may have refused it early, e.g. for its size",
    )


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": f"densenet-serve/{__version__}"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


class Client:
    """The service at `url`, over one keep-alive connection pool; use it as a context
    manager or call close(). `transport` replaces the network (httpx's, e.g.
    `httpx.MockTransport` in a test)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, headers=_headers(api_key), timeout=timeout_s, transport=transport
        )

    def classify(
        self,
        image: Image,
        *,
        model: str | None = None,
        version: int | None = None,
        top_k: int | None = None,
    ) -> Classification:
        """POST /classify: the top `top_k` classes of one image (bytes, or a file's path)."""
        return self._send(_classify_call(image, model, version, top_k))

    def models(self) -> list[ModelInfo]:
        """GET /models: every served model version."""
        return self._send(_MODELS)

    def _send(self, call: _Call[T]) -> T:
        exchange = _exchange(self.url, call)
        request = next(exchange)
        while True:
            try:
                outcome: _Reply = self._http.request(
                    request.method, request.path, params=request.params, files=request.files
                )
            except httpx.TransportError as exc:
                outcome = exc
            try:
                request = exchange.send(outcome)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClient:
    """`Client` for asyncio: the same methods, awaited (`transport`: an async one)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=_headers(api_key), timeout=timeout_s, transport=transport
        )

    async def classify(
        self,
        image: Image,
        *,
        model: str | None = None,
        version: int | None = None,
        top_k: int | None = None,
    ) -> Classification:
        """POST /classify: the top `top_k` classes of one image (bytes, or a file's path)."""
        return await self._send(_classify_call(image, model, version, top_k))

    async def models(self) -> list[ModelInfo]:
        """GET /models: every served model version."""
        return await self._send(_MODELS)

    async def _send(self, call: _Call[T]) -> T:
        exchange = _exchange(self.url, call)
        request = next(exchange)
        while True:
            try:
                outcome: _Reply = await self._http.request(
                    request.method, request.path, params=request.params, files=request.files
                )
            except httpx.TransportError as exc:
                outcome = exc
            try:
                request = exchange.send(outcome)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
