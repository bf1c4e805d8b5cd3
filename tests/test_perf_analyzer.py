"""Triton's perf_analyzer, a client nobody here wrote, runs against the service: its model
parser accepts /config and metadata, it sends the `image` input and the FP32 tensor, and
it reads the statistics extension (`make pytest` installs it with
bench/perf_analyzer/install.sh; outside CI the test skips when that was not possible)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench.perf_analyzer.study import measure, write_data
from tests import images
from tests.conftest import ROOT
from tests.server import running

pytestmark = pytest.mark.slow
TOOL = ROOT / ".perf-analyzer" / "perf_analyzer"


@pytest.mark.skipif(
    not TOOL.exists(), reason=f"no perf_analyzer at {TOOL} (bench/perf_analyzer/install.sh)"
)
def test_perf_analyzer_measures_both_inputs(tiny_model: Path, tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(images.jpeg())
    args = argparse.Namespace(window_ms=1000)
    with running(tiny_model) as (_, url):
        files = write_data(tmp_path, photo, url, "densenet-tiny")
        assert set(files) == {"image", "input"}
        for data in files.values():
            step = measure(TOOL, url, "densenet-tiny", data, 2, args)
            assert step["throughput"] > 0
            assert step["server_compute_infer_us"] > 0  # from the statistics extension
        image_step = measure(TOOL, url, "densenet-tiny", files["image"], 1, args)
        assert image_step["server_compute_input_us"] > 0  # the server decoded the photo
