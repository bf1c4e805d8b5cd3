"""What a small compressed v2 body can make a real `python -m app` allocate: a reviewer's
31 KB gzip of tiny JSON values took the server's peak memory (VmHWM) from 154 MB to 827 MB.
Each such body must now be a 4xx within a stated bound of peak memory."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import httpx
import pytest

from tests.hostile_v2 import amplified_json
from tests.server import running

pytestmark = pytest.mark.slow
# The inflated body is held while its values are counted (at most ~30 MB here) and the
# allocator keeps some of it; parsing tens of millions of values would take 500+ MB.
PEAK_GROWTH_BOUND_MB = 100


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_amplifying_bodies_are_refused_within_a_bounded_peak(tiny_model: Path) -> None:
    with running(tiny_model) as (process, url):
        infer = f"{url}/v2/models/densenet-tiny/infer"
        warm = httpx.post(infer, json={"inputs": []}, timeout=30)  # the route's own first use
        assert warm.status_code == 400
        before = peak_mb(process.pid)
        for case in ("numbers", "empty_strings", "nested_lists"):
            raw = amplified_json(case)
            for encoding, body in (("gzip", gzip.compress(raw)), ("deflate", zlib.compress(raw))):
                answer = httpx.post(
                    infer,
                    content=body,
                    headers={"content-encoding": encoding, "content-type": "application/json"},
                    timeout=60,
                )
                assert 400 <= answer.status_code < 500, (case, encoding, answer.text)
                assert answer.json()["error"]
        growth = peak_mb(process.pid) - before
        assert growth < PEAK_GROWTH_BOUND_MB, f"peak memory grew by {growth:.0f} MB"
