"""The installed `densenet-serve` command, run as a user runs it, against a real service that
`densenet-serve serve` started."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from app.cli import Progress
from model_export.models import TINY_ARCH
from model_export.photos import bundled_photo_paths
from tests.server import free_port, running

pytestmark = pytest.mark.slow
COMMAND = Path(sys.executable).parent / "densenet-serve"  # pip install -e . puts it there
KEY = "cli-test-key"


def densenet_serve(*args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("DENSENET_URL", "DENSENET_API_KEY")}
    return subprocess.run(
        [str(COMMAND), *map(str, args)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def url(tiny_model: Path) -> Iterator[str]:
    assert COMMAND.is_file(), f"{COMMAND} missing: pip install -e . installs it"
    serve = [str(COMMAND), "serve"]  # the script is Python: tests.server runs it with python
    with running(tiny_model, python_args=serve, api_key=KEY, grpc_port=0) as (_, service):
        yield service


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    return bundled_photo_paths()[:2]


def classify(url: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return densenet_serve("classify", *args, DENSENET_URL=url, DENSENET_API_KEY=KEY)


def test_classify_two_photos(url: str, photos: list[Path]) -> None:
    result = classify(url, *photos, "--top-k", "3")
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[0] == f"{photos[0]}  ({TINY_ARCH} v1)"
    assert lines[4] == f"{photos[1]}  ({TINY_ARCH} v1)"
    shares = [float(line.split("%")[0]) for line in lines[1:4]]
    assert len(lines) == 8
    assert shares == sorted(shares, reverse=True)
    assert 0 < sum(shares) <= 100


def test_a_bad_file_fails_alone(url: str, photos: list[Path], tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    missing = tmp_path / "missing.jpg"
    result = classify(url, photos[0], text, missing)
    assert result.returncode == 1
    assert result.stdout.startswith(f"{photos[0]}  ({TINY_ARCH} v1)\n")
    errors = result.stderr.splitlines()
    assert errors[0].startswith(f"densenet-serve: {text}: invalid_image: ")
    assert errors[0].endswith("(HTTP 400)")
    assert errors[1] == f"densenet-serve: {missing}: unreadable: No such file or directory"
    assert errors[2] == "densenet-serve: 2 of 3 file(s) not classified"


def test_a_wrong_model_name_stops_at_once(url: str, photos: list[Path]) -> None:
    result = classify(url, *photos, "--model", "densenet999")
    assert (result.returncode, result.stdout) == (4, "")
    [line] = result.stderr.splitlines()
    assert line.startswith("densenet-serve: model_not_found: ")
    assert "densenet999" in line
    assert line.endswith("(HTTP 404)")


def test_a_wrong_api_key_is_refused(url: str, photos: list[Path]) -> None:
    result = densenet_serve("classify", photos[0], "--url", url, "--api-key", "wrong")
    assert result.returncode == 4
    assert result.stderr.startswith("densenet-serve: unauthorized: ")


def test_json_output_parses(url: str, photos: list[Path], tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    result = classify(url, photos[1], text, "--json", "--top-k", "2")
    assert result.returncode == 1
    good, bad = json.loads(result.stdout)
    assert (good["path"], good["model"], good["version"]) == (str(photos[1]), TINY_ARCH, 1)
    assert [set(p) for p in good["predictions"]] == [{"label", "class_index", "probability"}] * 2
    assert good["timings"]["total_ms"] > 0
    assert bad == {
        "path": str(text),
        "error": {"code": "invalid_image", "message": bad["error"]["message"], "status": 400},
    }


def test_models_lists_the_served_model(url: str) -> None:
    table = densenet_serve("models", "--url", url)
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    columns = ["MODEL", "VERSION", "DEFAULT", "READY", "WEIGHTS", "PRECISION", "RUNTIME"]
    assert header.split() == columns
    assert row.split() == [TINY_ARCH, "1", "yes", "yes", "checkpoint", "fp32", "onnxruntime"]
    listed = json.loads(densenet_serve("models", "--url", url, "--json").stdout)
    assert [(m["name"], m["version"], m["default"]) for m in listed] == [(TINY_ARCH, 1, True)]


def test_no_service_is_exit_3_in_one_line(photos: list[Path]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for command in (["classify", photos[0]], ["models"]):
        result = densenet_serve(*command, DENSENET_URL=url)
        assert (result.returncode, result.stdout) == (3, "")
        [line] = result.stderr.splitlines()
        assert line.startswith(f"densenet-serve: no answer from {url}: ")


def test_usage_errors_are_exit_2() -> None:
    assert densenet_serve("classify", "a.jpg", "--top-k", "0").returncode == 2
    assert densenet_serve("classify").returncode == 2
    assert densenet_serve("nonsense").returncode == 2


def test_serve_exits_as_its_help_says(tmp_path: Path) -> None:
    assert "2 when a DENSENET_* setting\nis invalid" in densenet_serve("--help").stdout
    invalid = densenet_serve("serve", DENSENET_PORT="not-a-port")
    assert invalid.returncode == 2
    assert invalid.stderr.startswith("invalid DENSENET_* settings:")
    missing = densenet_serve("serve", DENSENET_MODEL_PATH=str(tmp_path / "missing.onnx"))
    assert missing.returncode == 1
    assert "cannot start" in missing.stderr


def test_version_is_the_packages() -> None:
    result = densenet_serve("--version")
    assert result.stdout.strip() == f"densenet-serve {version('densenet-serve')}"


def test_progress_bar_draws_in_place_and_clears() -> None:
    stream = io.StringIO()
    progress = Progress(4, stream, enabled=True, width=8)
    progress.advance()
    progress.clear()
    assert stream.getvalue() == "\r[##......] 1/4\r\x1b[K"
    silent = io.StringIO()
    Progress(4, silent, enabled=False).advance()
    assert silent.getvalue() == ""


def test_a_reader_that_goes_away_stops_it_quietly(url: str) -> None:
    """`densenet-serve classify ... | head -1`: no traceback when the pipe closes."""
    many = [str(p) for p in bundled_photo_paths()] * 4
    reader = subprocess.Popen(["head", "-1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert reader.stdin is not None
    env = {**os.environ, "DENSENET_URL": url, "DENSENET_API_KEY": KEY}
    command = subprocess.run(
        [str(COMMAND), "classify", "--top-k", "5", *many],
        stdout=reader.stdin,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    reader.stdin.close()
    assert reader.stdout is not None
    first = reader.stdout.read()
    reader.stdout.close()
    assert reader.wait(timeout=30) == 0
    assert first.decode().endswith(f"({TINY_ARCH} v1)\n")
    assert "Traceback" not in command.stderr
    assert command.returncode in (0, 141)  # 0 when everything fit in the pipe before it closed
