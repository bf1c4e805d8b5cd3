"""The data plane without any transport: lookups, readiness and drain, the deadline and
the client's going away, the decode limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.dataplane import DataPlane
from app.errors import ClientDisconnected, ModelNotFound, NotReady, ShuttingDown, Timeout
from app.metrics import Metrics
from app.repository import ModelRepository, load_models
from tests.conftest import settings_for


@pytest.fixture
async def dataplane(tiny_model: Path) -> AsyncIterator[DataPlane]:
    settings = settings_for(tiny_model, request_timeout_s=0.2)
    plane = DataPlane(settings, Metrics())
    repository = ModelRepository(load_models(settings), settings, plane.metrics)
    repository.start()
    plane.repository = repository
    try:
        yield plane
    finally:
        await repository.close()


async def never(_: object = None) -> None:
    await asyncio.Event().wait()


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("densenet-tiny", "2"),
        ("densenet-tiny", "\u00b2"),  # str.isdigit() says yes; int() raised
        ("densenet-tiny", "\u0661"),  # int() made it version 1
        ("densenet-tiny", "1" * 5000),
        ("densenet-tiny", "0"),
        ("densenet-tiny\n", None),
        ("x" * 65, None),
        ("nope", None),
    ],
)
async def test_names_and_versions_that_were_never_loaded_are_not_found(
    dataplane: DataPlane, name: str, version: str | None
) -> None:
    with pytest.raises(ModelNotFound):
        dataplane.find(name, version)


async def test_the_default_model_and_its_latest_version(dataplane: DataPlane) -> None:
    assert dataplane.find() is dataplane.find("densenet-tiny", "1")
    assert dataplane.find(version=1) is dataplane.find("densenet-tiny")


async def test_admission_waits_for_warm_up_and_stops_at_the_drain(dataplane: DataPlane) -> None:
    with pytest.raises(NotReady, match="still loading"):
        dataplane.admit()
    await dataplane.models().warm_up()
    assert dataplane.admit().version == 1
    dataplane.drain.begin(5)
    with pytest.raises(ShuttingDown):
        dataplane.admit()
    assert not dataplane.ready


async def test_run_holds_work_to_the_deadline(dataplane: DataPlane) -> None:
    assert await dataplane.run(asyncio.sleep(0, "done"), never()) == "done"
    with pytest.raises(Timeout, match=r"0\.2 s"):
        await dataplane.run(never(), never())


async def test_run_gives_up_when_the_client_goes_or_the_service_stops(
    dataplane: DataPlane,
) -> None:
    with pytest.raises(ClientDisconnected):
        await dataplane.run(never(), asyncio.sleep(0))
    dataplane.drain.abort()
    with pytest.raises(ShuttingDown):
        await dataplane.run(never(), never())


async def test_decode_limits_follow_the_model_and_the_settings(dataplane: DataPlane) -> None:
    limits = dataplane.decode_limits(dataplane.find())
    assert limits.body_bytes == dataplane.settings.max_v2_body_bytes
    batch = 8 * 3 * 224 * 224
    assert limits.json_values == batch + batch // 224 + 8 * 4 + 1 + 4096
