"""Closed-loop load spread over the models of a repository, run as its own process.

``python -m bench.mixedload --url URL --images DIR --models a,b,c,d --concurrency 16``:
client i sends to ``POST /classify?model=<models[i % len(models)]>``, each its next photo
as soon as its last answer came back, so the clients are spread evenly over the models.
Only requests that finish inside the measurement window count, in total and per model.
The result is one JSON object on stdout, with /metrics scraped at the window's edges.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.loadgen import Outcome, Recorder, _client, _counts, _mean_timings, _window
from bench.promtext import scrape
from bench.stats import latency_summary


def _summary(outcomes: list[Outcome], window_s: float) -> dict[str, Any]:
    ok = [o.latency_s for o in outcomes if o.status == "200"]
    return {
        "requests": len(outcomes),
        "throughput": len(ok) / window_s,
        "status_counts": _counts(outcomes),
        "latency_ms": latency_summary(ok),
        "server_timings_ms": _mean_timings(outcomes),
    }


async def closed_loop(args: argparse.Namespace, images: list[bytes]) -> dict[str, Any]:
    """N clients over the models; throughput and latency in total and per model."""
    models: list[str] = args.models.split(",")
    recorders = {model: Recorder() for model in models}
    stop_at = time.monotonic() + args.warmup + args.duration

    async def worker(client: httpx.AsyncClient, index: int) -> None:
        model = models[index % len(models)]
        url = f"{args.url}/classify?model={model}"
        bodies = itertools.islice(itertools.cycle(images), index, None)
        while time.monotonic() < stop_at:
            request = (next(bodies), {"content-type": "image/jpeg"})
            outcome = await recorders[model].send(client, url, request)
            if outcome.status != "200":
                await asyncio.sleep(0.05)  # do not spin on a rejecting server

    async with _client(args.concurrency, args.timeout) as client, _client(1, 10) as ops:
        workers = [asyncio.create_task(worker(client, i)) for i in range(args.concurrency)]
        await asyncio.sleep(args.warmup)
        window_start, before = time.monotonic(), await scrape(ops, args.url)
        await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
        window_end, after = time.monotonic(), await scrape(ops, args.url)
        await asyncio.gather(*workers)
    window_s = window_end - window_start
    measured = {
        model: _window(recorder.outcomes, window_start, window_end)
        for model, recorder in recorders.items()
    }
    per_model = {
        model: {"clients": len(range(i, args.concurrency, len(models))), **_summary(o, window_s)}
        for i, (model, o) in enumerate(measured.items())
    }
    everything = [o for outcomes in measured.values() for o in outcomes]
    return {
        "window_s": window_s,
        "models": models,
        **_summary(everything, window_s),
        "per_model": per_model,
        "metrics_before": before,
        "metrics_after": after,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mixedload", description=__doc__)
    parser.add_argument("--url", required=True, help="server base URL")
    parser.add_argument("--images", type=Path, required=True, help="folder of .jpg files")
    parser.add_argument("--models", required=True, help="comma-separated model names")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=120.0, help="client timeout per request")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=12.0)
    args = parser.parse_args(argv)
    images = [path.read_bytes() for path in sorted(args.images.glob("*.jpg"))]
    if not images:
        parser.error(f"no .jpg files in {args.images}")
    json.dump(asyncio.run(closed_loop(args, images)), sys.stdout)


if __name__ == "__main__":
    main()
