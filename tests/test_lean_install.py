"""The lean install of `make serve`: scripts/ensure-model.sh installs the export environment
(its INSTALL_EXPORT hook) only when it has a model to export, and
scripts/install-export-env.sh falls back from PyTorch's CPU index to the default one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from model_export.models import TINY_ARCH

ROOT = Path(__file__).resolve().parent.parent


def script(name: str, **env: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / name)],
        cwd=ROOT,
        env={**os.environ, **{key: str(value) for key, value in env.items()}},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def fake_command(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def ensure_model(
    models: Path, install_export: Path, weights: str = "random"
) -> subprocess.CompletedProcess[str]:
    # PYTHON: this environment's, which has torch, as .venv-export's would.
    return script(
        "ensure-model.sh",
        ARCH=TINY_ARCH,
        WEIGHTS=weights,
        MODEL_DIR=models,
        PYTHON=sys.executable,
        INSTALL_EXPORT=install_export,
    )


def test_the_export_environment_is_installed_once_before_the_first_export(
    tmp_path: Path,
) -> None:
    models, calls = tmp_path / "models", tmp_path / "calls"
    # Records each call and what MODEL_DIR held then: the install must come before the export.
    installer = fake_command(
        tmp_path / "install-export", f'echo "held: $(ls -A "{models}" 2>/dev/null)" >> "{calls}"'
    )
    exported = ensure_model(models, installer)
    assert exported.returncode == 0, exported.stderr
    model = models / f"{TINY_ARCH}-random.onnx"
    assert exported.stdout == f"{model}\n"
    assert model.is_file()
    assert calls.read_text() == "held: \n"  # called once, with nothing exported yet

    again = ensure_model(models, installer)
    assert (again.returncode, again.stdout) == (0, f"{model}\n")
    assert calls.read_text() == "held: \n"  # the model is there: nothing to install


def test_a_failed_install_stops_rather_than_falling_back_to_random_weights(
    tmp_path: Path,
) -> None:
    models = tmp_path / "models"
    installer = fake_command(tmp_path / "install-export", "echo 'no pip here' >&2; exit 3")
    failed = ensure_model(models, installer, weights="auto")
    assert (failed.returncode, failed.stdout) == (1, "")
    assert failed.stderr.splitlines() == [
        "no pip here",
        f"cannot export {TINY_ARCH}: installing the export environment failed ({installer}); "
        "see above",
    ]
    assert not models.exists() or not any(models.iterdir())


def install_export_env(tmp_path: Path, pip: str) -> subprocess.CompletedProcess[str]:
    """install-export-env.sh with a fake Python already in EXPORT_VENV: it logs each call to
    `calls` and runs `pip` (a shell snippet) for it."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    fake_command(venv / "bin" / "python", f'echo "$*" >> "{tmp_path / "calls"}"\n{pip}')
    return script(
        "install-export-env.sh", EXPORT_VENV=venv, TORCH_INDEX_URL="https://cpu.invalid/whl"
    )


WORKS = "-c import torch, torchvision; torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)"
CPU_INSTALL = "-m pip install --quiet --index-url https://cpu.invalid/whl torch torchvision"
EXPORTER = "-m pip install --quiet -e .[export]"


def test_torch_comes_from_the_cpu_index_through_pip(tmp_path: Path) -> None:
    installed = install_export_env(tmp_path, "exit 0")
    assert installed.returncode == 0, installed.stderr
    assert (tmp_path / "calls").read_text().splitlines() == [
        "-m pip install --upgrade --quiet pip",
        CPU_INSTALL,
        WORKS,
        EXPORTER,
        WORKS,
    ]
    assert "default index" not in installed.stderr


@pytest.mark.parametrize(
    "fake_pip",
    [
        # the CPU index cannot be reached (or has no wheel for this platform)
        'case "$*" in *--index-url*) echo "ERROR: no route" >&2; exit 1;; esac',
        # pip installed a torchvision built for another torch (one came from find-links):
        # it fails the first time an operator runs, until the default index's pair replaces it
        'case "$*" in *torchvision.ops*) [ -f "{calls}.exported" ] || exit 1;; '
        '*-e*) touch "{calls}.exported";; esac',
    ],
    ids=["unreachable", "mismatched-pair"],
)
def test_where_the_cpu_index_fails_the_default_index_is_used_and_said(
    tmp_path: Path, fake_pip: str
) -> None:
    installed = install_export_env(tmp_path, fake_pip.replace("{calls}", str(tmp_path / "calls")))
    assert installed.returncode == 0, installed.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert "-m pip uninstall --quiet --yes torch torchvision" in calls
    assert calls[-2:] == [EXPORTER, WORKS]
    [fallback] = [line for line in installed.stderr.splitlines() if "default index" in line]
    assert fallback.startswith("torch and torchvision could not be installed together from ")


def test_an_export_environment_that_still_does_not_work_stops(tmp_path: Path) -> None:
    installed = install_export_env(tmp_path, 'case "$*" in *torchvision.ops*) exit 1;; esac')
    assert installed.returncode == 1
    assert "torch and torchvision do not work together" in installed.stderr
