"""A repository of models in one service: discovery and its errors, routing by name and
version, the default model, per-model batching, fairness, metrics and readiness."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from app.config import Settings
from app.engine import Engine
from app.errors import ModelLoadError
from app.repository import default_engine_loader, discover, load_models
from tests import images
from tests.conftest import serve, wait_until
from tests.engines import ControlledEngine
from tests.test_engine import graph_model

RED = images.encode(images.photo(320, 240).point(lambda v: v // 4).convert("RGB"), "PNG")
COLOR_LABELS = ["red", "green", "blue"]


def colors_model(tmp_path: Path, labels: list[str]) -> Path:
    """3 classes (channel means) with its own recipe: resize 160, crop 128, no normalizing."""
    meta = {
        "labels": json.dumps(labels),
        "resize_size": "160",
        "crop_size": "128",
        "interpolation": "bicubic",
        "mean": "[0, 0, 0]",
        "std": "[1, 1, 1]",
        "arch": "colors",
        "weights": "checkpoint",
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    return graph_model(tmp_path, ["n", 3, 128, 128], ["n", 3], meta=meta)


@pytest.fixture
def repository(tmp_path: Path, tiny_model: Path) -> Path:
    """densenet/1 (the tiny DenseNet, ImageNet labels), colors/1 and colors/2."""
    root = tmp_path / "repo"
    for name, version, source in [
        ("densenet", 1, tiny_model),
        ("colors", 1, colors_model(tmp_path / "c1", COLOR_LABELS)),
        ("colors", 2, colors_model(tmp_path / "c2", [s.upper() for s in COLOR_LABELS])),
    ]:
        (root / name / str(version)).mkdir(parents=True)
        shutil.copy(source, root / name / str(version) / "model.onnx")
    (root / "colors" / "config.pbtxt").write_text("# Triton's files beside versions are ignored")
    return root


def repo_settings(root: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "model_repository": root,
        "default_model": "densenet",
        "intra_op_threads": 1,
        "preprocess_threads": 2,
        "warmup_runs": 1,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def test_discovery_lists_every_version(repository: Path) -> None:
    found = [(name, version) for name, version, _ in discover(repository)]
    assert found == [("colors", 1), ("colors", 2), ("densenet", 1)]


def broken(root: Path, case: str) -> None:
    model = root / "colors" / "1" / "model.onnx"
    if case == "broken_file":
        model.write_bytes(b"not an onnx file")
    elif case == "version_not_a_number":
        shutil.copytree(root / "colors" / "1", root / "colors" / "latest")
    elif case == "version_without_model":
        (root / "colors" / "3").mkdir()
    elif case == "model_without_versions":
        (root / "empty-model").mkdir()
    elif case in ("version_superscript", "version_arabic_indic"):
        digit = "\u00b2" if case == "version_superscript" else "\u0662"  # '²', '٢'
        shutil.copytree(root / "colors" / "1", root / "colors" / digit)
    elif case == "bad_name":
        shutil.copytree(root / "colors", root / "no spaces")
    elif case == "name_with_newline":  # would split log lines and metric labels
        shutil.copytree(root / "colors", root / "colors\n")
    elif case == "unknown_default":
        pass


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("broken_file", "colors/1/model.onnx as an ONNX model"),
        ("version_not_a_number", "'latest' is not a positive integer in ASCII digits"),
        ("version_superscript", "'\u00b2' is not a positive integer in ASCII digits"),
        ("version_arabic_indic", "'\u0662' is not a positive integer in ASCII digits"),
        ("version_without_model", "no model.onnx in this version directory"),
        ("model_without_versions", "has no version directories"),
        ("bad_name", "is not a valid model name"),
        ("name_with_newline", "'colors\\\\n' is not a valid model name"),
    ],
)
def test_an_invalid_repository_stops_start_up_naming_the_file(
    repository: Path, case: str, message: str
) -> None:
    broken(repository, case)
    with pytest.raises(ModelLoadError, match=message.replace("/", ".")):
        load_models(repo_settings(repository))


def test_empty_repositories_and_defaults_are_checked(repository: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="has no models"):
        load_models(repo_settings(tmp_path / "empty"))
    with pytest.raises(ModelLoadError, match="is not a directory"):
        load_models(repo_settings(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match="set DENSENET_DEFAULT_MODEL"):
        load_models(repo_settings(repository, default_model=None))
    with pytest.raises(ModelLoadError, match="nope is not in the repository"):
        load_models(repo_settings(repository, default_model="nope"))


def test_a_model_without_metadata_is_served_with_warnings(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "bare" / "1").mkdir(parents=True)
    shutil.copy(graph_model(tmp_path, ["n", 3, 224, 224], ["n", 3]), root / "bare/1/model.onnx")
    [loaded] = load_models(repo_settings(root, default_model=None))
    assert (loaded.name, loaded.version) == ("bare", 1)
    assert loaded.engine.spec.labels[:2] == ["class_0", "class_1"]
    assert loaded.engine.spec.metadata_warnings


async def classify(client: httpx.AsyncClient, **params: object) -> httpx.Response:
    return await client.post("/classify", files={"file": RED}, params=params)


async def test_requests_pick_models_by_name_and_version(repository: Path) -> None:
    async with serve(repo_settings(repository)) as (_, client):
        default = (await classify(client)).json()
        assert (default["model"], default["version"]) == ("densenet", 1)
        latest = (await classify(client, model="colors")).json()
        assert (latest["model"], latest["version"]) == ("colors", 2)
        assert latest["predictions"][0]["label"] == "RED"
        first = (await classify(client, model="colors", version=1)).json()
        assert [p["label"] for p in first["predictions"]] == ["red", "green", "blue"]
        for params, message in [
            ({"model": "resnet"}, "no model named 'resnet'"),
            ({"model": "colors", "version": 9}, "has no version 9"),
            ({"model": "../densenet"}, "no model named"),
        ]:
            missing = await classify(client, **params)
            assert missing.status_code == 404
            assert missing.json()["error"]["code"] == "model_not_found"
            assert message in missing.json()["error"]["message"]
        batch = await client.post(
            "/classify/batch", files=[("files", RED)] * 2, params={"model": "colors"}
        )
        assert (batch.json()["model"], batch.json()["version"]) == ("colors", 2)


async def test_models_are_listed_and_described(repository: Path) -> None:
    async with serve(repo_settings(repository)) as (_, client):
        listing = (await client.get("/models")).json()
        assert listing["default_model"] == "densenet"
        entries = {(m["name"], m["version"]): m for m in listing["models"]}
        assert list(entries) == [("colors", 1), ("colors", 2), ("densenet", 1)]
        assert all(m["ready"] for m in entries.values())
        assert entries[("colors", 2)]["latest"]
        assert not entries[("colors", 1)]["latest"]
        assert entries[("densenet", 1)]["default"]
        assert entries[("colors", 1)]["input_shape"] == ["N", 3, 128, 128]
        assert entries[("colors", 1)]["preprocessing"]["interpolation"] == "bicubic"
        assert entries[("densenet", 1)]["num_classes"] == 1000
        assert (await client.get("/models/colors")).json()["version"] == 2
        one = (await client.get("/models/colors/versions/1")).json()
        assert (one["name"], one["version"], one["num_classes"]) == ("colors", 1, 3)
        assert (await client.get("/model")).json()["name"] == "densenet"
        for path in ("/models/nope", "/models/colors/versions/7"):
            gone = await client.get(path)
            assert (gone.status_code, gone.json()["error"]["code"]) == (404, "model_not_found")


class Recording(ControlledEngine):
    """Records the input shape of every batch; can be slowed down."""

    def __init__(self, inner: Engine, delay_s: float = 0.0) -> None:
        super().__init__(inner)
        self.shapes: list[tuple[int, ...]] = []
        self.delay_s = delay_s
        self.finished: list[float] = []

    def run(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        self.shapes.append(batch.shape)
        self.started.set()
        time.sleep(self.delay_s if batch.any() else 0)
        result = super().run(batch)
        self.finished.append(time.monotonic())
        return result


def recording_loader(
    settings: Settings, delays: dict[str, float]
) -> tuple[Callable[[Path], Engine], dict[str, Recording]]:
    real = default_engine_loader(settings)
    engines: dict[str, Recording] = {}

    def load(path: Path) -> Engine:
        name = path.parent.parent.name
        engines[f"{name}/{path.parent.name}"] = Recording(real(path), delays.get(name, 0.0))
        return engines[f"{name}/{path.parent.name}"]

    return load, engines


async def test_a_batch_never_mixes_models(repository: Path) -> None:
    settings = repo_settings(repository, max_batch_delay_ms=50, max_batch_size=8)
    loader, engines = recording_loader(settings, {})
    async with serve(settings, engine_loader=loader) as (_, client):
        warm = {key: len(engine.shapes) for key, engine in engines.items()}
        sent = [classify(client, model="colors") for _ in range(6)]
        sent += [classify(client, model="densenet") for _ in range(6)]
        assert all(r.status_code == 200 for r in await asyncio.gather(*sent))
        colors = engines["colors/2"].shapes[warm["colors/2"] :]
        dense = engines["densenet/1"].shapes[warm["densenet/1"] :]
        assert {s[2:] for s in colors} == {(128, 128)}
        assert {s[2:] for s in dense} == {(224, 224)}
        assert sum(s[0] for s in colors) == sum(s[0] for s in dense) == 6
        assert max(s[0] for s in colors + dense) > 1  # they were batched


async def test_a_flood_on_one_model_does_not_starve_another(repository: Path) -> None:
    settings = repo_settings(repository, max_batch_size=2, max_queue_size=64)
    loader, engines = recording_loader(settings, {"densenet": 0.1})
    async with serve(settings, engine_loader=loader) as (_, client):
        flood = [asyncio.ensure_future(classify(client, model="densenet")) for _ in range(30)]
        await wait_until(lambda: len(engines["densenet/1"].finished) > 3)
        asked = time.monotonic()
        other = await classify(client, model="colors")
        answered = time.monotonic()
        assert other.status_code == 200
        pending = sum(not f.done() for f in flood)
        assert pending > 5, "the flood was over before the other model was asked"
        # fair turns: it waited for at most a couple of the flooded model's batches
        assert answered - asked < 5 * 0.1 + 1.0
        assert all(r.status_code == 200 for r in await asyncio.gather(*flood))


async def test_a_slow_to_decode_flood_on_one_model_does_not_starve_another(
    repository: Path,
) -> None:
    """The decode threads are taken in turns by model: a small image for one model waits
    for at most one of another model's slow decodes, not for all of them."""
    settings = repo_settings(repository, preprocess_threads=1, max_queue_size=64)
    slow = images.encode(Image.new("RGB", (4000, 4000), (10, 200, 30)), "PNG")
    async with serve(settings) as (app, client):
        flooded = app.state.dataplane.models().find("densenet")
        flood = [
            asyncio.ensure_future(
                client.post(
                    "/classify?model=densenet", content=slow, headers={"content-type": "image/png"}
                )
            )
            for _ in range(8)
        ]
        await wait_until(lambda: flooded.admitted == 8)
        other = await classify(client, model="colors")
        decoded_before = sum(f.done() for f in flood)
        assert other.status_code == 200, other.text
        # First come, first served would have decoded all 8 first.
        assert decoded_before <= 3, f"{decoded_before} of the flood were answered first"
        assert all(r.status_code == 200 for r in await asyncio.gather(*flood))


async def test_the_queue_limit_is_per_model_not_per_version(repository: Path) -> None:
    """Naming several versions must not multiply what a client can have waiting."""
    settings = repo_settings(repository, max_queue_size=3, max_batch_size=1)
    engines: dict[str, ControlledEngine] = {}
    real = default_engine_loader(settings)

    def load(path: Path) -> Engine:
        engines[f"{path.parent.parent.name}/{path.parent.name}"] = ControlledEngine(real(path))
        return engines[f"{path.parent.parent.name}/{path.parent.name}"]

    async with serve(settings, engine_loader=load) as (app, client):
        for engine in engines.values():
            engine.gate.clear()
            engine.started.clear()  # set by the warm-up
        held = [asyncio.ensure_future(classify(client, model="colors", version=1))]
        await asyncio.to_thread(engines["colors/1"].started.wait, 30)  # in flight, not queued
        held += [
            asyncio.ensure_future(classify(client, model="colors", version=v)) for v in (1, 1, 2)
        ]
        repository = app.state.dataplane.models()
        await wait_until(lambda: sum(p.admitted for p in repository if p.name == "colors") == 3)
        refused = await classify(client, model="colors", version=2)
        assert refused.status_code == 503, refused.text
        assert "all versions together" in refused.json()["error"]["message"]
        other_model = asyncio.ensure_future(classify(client, model="densenet"))
        for engine in engines.values():
            engine.gate.set()
        assert all(r.status_code == 200 for r in await asyncio.gather(*held, other_model))


async def test_metrics_and_readiness_are_per_model(repository: Path) -> None:
    settings = repo_settings(repository)
    loader, engines = recording_loader(settings, {})
    async with serve(settings, engine_loader=loader, wait_ready=False) as (app, client):
        engines["colors/1"].gate.clear()  # its warm-up hangs
        await wait_until(engines["colors/1"].started.is_set)
        ready = await client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "not_ready"
        engines["colors/1"].gate.set()
        await wait_until(lambda: app.state.dataplane.ready)
        assert (await client.get("/health/ready")).status_code == 200
        await classify(client, model="colors", version=1)
        await classify(client)
        text = (await client.get("/metrics")).text
        for series in (
            'classifier_images_classified_total{model="colors",version="1"} 1.0',
            'classifier_images_classified_total{model="densenet",version="1"} 1.0',
            'classifier_images_classified_total{model="colors",version="2"} 0.0',
            'classifier_model_ready{model="colors",version="2"} 1.0',
        ):
            assert series in text, series
        assert 'model="resnet"' not in text


async def test_a_batch_is_taken_when_the_device_is_free(repository: Path) -> None:
    """Images that queue while another model's batch runs all join this model's next
    batch (taken before the wait, the first arrival would have gone alone)."""
    settings = repo_settings(repository, max_batch_size=8)
    loader, engines = recording_loader(settings, {"densenet": 2.0})
    async with serve(settings, engine_loader=loader) as (app, client):
        colors = engines["colors/2"]
        warm = len(colors.shapes)
        engines["densenet/1"].started.clear()
        busy = asyncio.ensure_future(classify(client, model="densenet"))
        await asyncio.to_thread(engines["densenet/1"].started.wait, 10)
        sent = [asyncio.ensure_future(classify(client, model="colors")) for _ in range(6)]
        colors_queue = app.state.dataplane.repository.find("colors").batcher
        await wait_until(lambda: colors_queue.queue_depth == 6)
        assert not busy.done(), "the slow batch ended before the others queued"
        assert all(r.status_code == 200 for r in await asyncio.gather(*sent))
        assert [s[0] for s in colors.shapes[warm:]] == [6]
        assert (await busy).status_code == 200
