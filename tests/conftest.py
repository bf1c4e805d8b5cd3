"""Shared fixtures: small DenseNets exported by model_export, and the real app over httpx."""

from __future__ import annotations

import asyncio
import contextlib
import io
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import torch
from fastapi import FastAPI
from torchvision.models import DenseNet

from app.config import Settings
from app.engine import Engine
from app.repository import default_engine_loader
from app.web.app import create_app
from model_export import cli
from model_export.models import TINY_ARCH, TINY_CONFIG

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str | Path, in_process: bool = True) -> subprocess.CompletedProcess[str]:
    """`python -m model_export ARGS`: in this process (fast: torch is imported once) or,
    with in_process=False, exactly as a user runs it."""
    argv = [str(a) for a in args]
    if not in_process:
        return subprocess.run(
            [sys.executable, "-m", "model_export", *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse's own errors
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded random state_dict of the tiny DenseNet, saved as torchvision would."""
    torch.manual_seed(1234)
    model = DenseNet(num_classes=1000, **TINY_CONFIG)
    path = tmp_path_factory.mktemp("checkpoint") / "tiny.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    """The tiny DenseNet exported from the checkpoint through the real CLI."""
    path = tmp_path_factory.mktemp("models") / "tiny.onnx"
    result = run_cli("export", "--arch", TINY_ARCH, "--checkpoint", tiny_checkpoint, "-o", path)
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture(scope="session")
def tiny_random_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny-random.onnx"
    result = run_cli(
        "export", "--arch", TINY_ARCH, "--weights", "random", "--seed", "0", "-o", path
    )
    assert result.returncode == 0, result.stderr
    return path


def settings_for(model: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "model_path": model,
        "intra_op_threads": 1,
        "preprocess_threads": 2,
        "warmup_runs": 1,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def load_engine(settings: Settings) -> Engine:
    """A real ONNX Runtime engine for settings.model_path."""
    return default_engine_loader(settings)(settings.model_path)


@asynccontextmanager
async def serve(
    settings: Settings,
    engine_factory: Callable[[], Engine] | None = None,
    engine_loader: Callable[[Path], Engine] | None = None,
    wait_ready: bool = True,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The real app with its lifespan running, reached through httpx."""
    loader = engine_loader
    if engine_factory is not None:
        loader = lambda _path: engine_factory()  # noqa: E731
    app = create_app(settings, engine_loader=loader)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            if wait_ready:
                await wait_until(lambda: app.state.dataplane.ready, timeout_s=60)
            yield app, client


async def wait_until(condition: Callable[[], object], timeout_s: float = 30) -> None:
    """Poll `condition` until it is true; fail (not hang) after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, f"condition not met within {timeout_s} s"
        await asyncio.sleep(0.01)


@pytest.fixture
async def client(tiny_model: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(settings_for(tiny_model)) as (_, http):
        yield http
