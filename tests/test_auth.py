"""Bearer-token authentication: off without a key, required on classification with one,
on the operator routes only when asked, never on the health probes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import images
from tests.conftest import serve, settings_for

JPEG = images.jpeg(64, 64)


async def test_without_a_key_nothing_asks_for_one(tiny_model: Path) -> None:
    async with serve(settings_for(tiny_model)) as (_, client):
        assert (await client.post("/classify", files={"file": JPEG})).status_code == 200
        assert (await client.get("/models")).status_code == 200


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (None, 401),
        ("Bearer", 401),
        ("Bearer ", 401),
        ("Bearer wrong", 401),
        ("Basic k3y", 401),
        ("Bearer k3y", 200),
        ("bearer k3y", 200),
    ],
)
async def test_classification_needs_the_key(
    tiny_model: Path, header: str | None, status: int
) -> None:
    async with serve(settings_for(tiny_model, api_key="k3y")) as (_, client):
        headers = {"authorization": header} if header is not None else {}
        response = await client.post("/classify", files={"file": JPEG}, headers=headers)
        assert response.status_code == status, response.text
        if status == 401:
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error"]["code"] == "unauthorized"


async def test_a_key_with_a_trailing_newline_still_lets_clients_in(tiny_model: Path) -> None:
    async with serve(settings_for(tiny_model, api_key="k3y\n")) as (_, client):
        response = await client.post(
            "/classify", files={"file": JPEG}, headers={"authorization": "Bearer k3y"}
        )
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("protect", [False, True])
async def test_operator_routes_follow_the_setting(tiny_model: Path, protect: bool) -> None:
    settings = settings_for(tiny_model, api_key="k3y", protect_ops_endpoints=protect)
    async with serve(settings) as (_, client):
        for path in ("/metrics", "/model", "/models"):
            assert (await client.get(path)).status_code == (401 if protect else 200), path
        for path in ("/health/live", "/health/ready"):
            assert (await client.get(path)).status_code == 200, path
