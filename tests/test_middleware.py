"""The request middleware on a tiny real app: ids, closed metric labels, body limits,
the upload budget, early answers closing the connection."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request

from app.budget import UploadBudget
from app.draining import Drain
from app.metrics import Metrics
from app.web.errors import install
from app.web.middleware import RequestContextMiddleware, declare_body_limit


@pytest.fixture
async def app_and_metrics() -> AsyncIterator[
    tuple[httpx.AsyncClient, Metrics, RequestContextMiddleware]
]:
    metrics = Metrics()
    app = FastAPI()

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        declare_body_limit(request, 1000)
        return {"size": len(await request.body())}

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @app.api_route("/any", methods=["GET", "POST", "PUT", "DELETE", "FOO1", "FOO2"])
    async def anything() -> dict[str, str]:
        return {}

    install(app, metrics)
    middleware = RequestContextMiddleware(
        app, metrics=metrics, drain=Drain(), body_timeout_s=5, budget=UploadBudget(100_000)
    )
    transport = httpx.ASGITransport(app=middleware)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client, metrics, middleware


async def test_request_ids_are_echoed_when_sane(
    app_and_metrics: tuple[httpx.AsyncClient, Metrics, RequestContextMiddleware],
) -> None:
    client, _, _ = app_and_metrics
    assert (await client.get("/any", headers={"x-request-id": "abc-1"})).headers[
        "x-request-id"
    ] == "abc-1"
    made = (await client.get("/any", headers={"x-request-id": "bad id!"})).headers
    assert made["x-request-id"] != "bad id!"
    assert len(made["x-request-id"]) == 32


async def test_method_labels_come_from_a_closed_set(
    app_and_metrics: tuple[httpx.AsyncClient, Metrics, RequestContextMiddleware],
) -> None:
    client, metrics, _ = app_and_metrics
    for method in ("FOO1", "FOO2", "BAR3", "GET"):
        await client.request(method, "/any")
    methods = {
        sample.labels["method"]
        for family in metrics.registry.collect()
        if family.name == "classifier_http_requests"
        for sample in family.samples
    }
    assert methods == {"GET", "other"}


async def test_route_labels_are_templates_or_unmatched(
    app_and_metrics: tuple[httpx.AsyncClient, Metrics, RequestContextMiddleware],
) -> None:
    client, metrics, _ = app_and_metrics
    for path in ("/nope/1", "/nope/2", "/any"):
        await client.get(path)
    routes = {
        sample.labels["route"]
        for family in metrics.registry.collect()
        if family.name == "classifier_http_requests"
        for sample in family.samples
    }
    assert routes == {"unmatched", "/any"}


async def test_a_route_declares_its_body_limit(
    app_and_metrics: tuple[httpx.AsyncClient, Metrics, RequestContextMiddleware],
) -> None:
    client, _, _ = app_and_metrics
    assert (await client.post("/upload", content=b"x" * 1000)).json() == {"size": 1000}
    refused = await client.post("/upload", content=b"x" * 1001)
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "payload_too_large"
    assert refused.headers["connection"] == "close"
    # a route that declares nothing takes the small default
    assert (await client.post("/echo", content=b"x" * 65_536)).status_code == 200
    assert (await client.post("/echo", content=b"x" * 65_537)).status_code == 413


async def test_uploads_in_progress_share_one_budget(
    app_and_metrics: tuple[httpx.AsyncClient, Metrics, RequestContextMiddleware],
) -> None:
    client, _, middleware = app_and_metrics
    middleware.budget.take(99_500)  # as if other uploads held most of the budget
    over = await client.post("/upload", content=b"x" * 600)
    assert over.status_code == 503
    assert over.json()["error"]["code"] == "overloaded"
    assert over.headers["retry-after"] == "1"
    middleware.budget.release(99_500)
    assert (await client.post("/upload", content=b"x" * 600)).status_code == 200
    assert middleware.budget.held == 0
