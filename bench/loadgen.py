"""Load generator, run as its own process: ``python -m bench.loadgen {closed,open} ...``.

closed: N async clients, each sending its next image as soon as the last answer came back.
open:   requests at a fixed arrival rate whatever the answers, then probes at concurrency 1
        to see how fast latency comes back to normal.
Images go as raw ``image/jpeg`` bodies to ``POST /classify``, or with ``--request`` as
Open Inference Protocol requests (bench/requests_v2.py). Only requests that finish
inside the measurement window (after the warm-up) count. The result is one JSON object on
stdout; /metrics is scraped at the window's edges so the caller can take deltas.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.promtext import scrape
from bench.requests_v2 import KINDS, Request, prepare
from bench.stats import latency_summary


@dataclass
class Outcome:
    sent: float  # monotonic seconds
    latency_s: float
    status: str  # HTTP status, or the exception's class name
    timings: dict[str, float] | None = None  # the service's own breakdown, when it sends one


@dataclass
class Recorder:
    outcomes: list[Outcome] = field(default_factory=list)

    async def send(self, client: httpx.AsyncClient, url: str, request: Request) -> Outcome:
        sent = time.monotonic()
        body, headers = request
        try:
            response = await client.post(url, content=body, headers=headers)
            status = str(response.status_code)
        except httpx.HTTPError as exc:
            status, response = type(exc).__name__, None
        latency = time.monotonic() - sent
        timings = None
        if status == "200" and response is not None and httpx.URL(url).path.endswith("/classify"):
            timings = response.json().get("timings")
        outcome = Outcome(sent, latency, status, timings)
        self.outcomes.append(outcome)
        return outcome


def _client(connections: int, timeout_s: float) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(timeout_s))


def _counts(outcomes: list[Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return dict(sorted(counts.items()))


def _mean_timings(outcomes: list[Outcome]) -> dict[str, float] | None:
    """Mean of each timing the service reported (queue, preprocess, inference, total)."""
    reported = [o.timings for o in outcomes if o.timings]
    if not reported:
        return None
    return {key: sum(t[key] for t in reported) / len(reported) for key in reported[0]}


def _window(outcomes: list[Outcome], start: float, end: float) -> list[Outcome]:
    return [o for o in outcomes if start <= o.sent + o.latency_s <= end]


async def closed_loop(
    args: argparse.Namespace, url: str, requests: list[Request]
) -> dict[str, Any]:
    """Fixed concurrency; throughput and latency of what completes inside the window."""
    recorder = Recorder()
    stop_at = time.monotonic() + args.warmup + args.duration
    bodies = itertools.cycle(requests)

    async def worker(client: httpx.AsyncClient, offset: int) -> None:
        for _ in range(offset):
            next(bodies)
        while time.monotonic() < stop_at:
            outcome = await recorder.send(client, url, next(bodies))
            if outcome.status != "200":
                await asyncio.sleep(0.05)  # do not spin on a rejecting server

    # /metrics goes through its own client so that it never waits for a pooled connection
    async with _client(args.concurrency, args.timeout) as client, _client(1, 10) as ops:
        workers = [asyncio.create_task(worker(client, i)) for i in range(args.concurrency)]
        await asyncio.sleep(args.warmup)
        window_start, before = time.monotonic(), await scrape(ops, args.url)
        await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
        window_end, after = time.monotonic(), await scrape(ops, args.url)
        await asyncio.gather(*workers)
    measured = _window(recorder.outcomes, window_start, window_end)
    ok = [o.latency_s for o in measured if o.status == "200"]
    return {
        "window_s": window_end - window_start,
        "requests": len(measured),
        "throughput": len(ok) / (window_end - window_start),
        "status_counts": _counts(measured),
        "latency_ms": latency_summary(ok),
        "server_timings_ms": _mean_timings(measured),
        "metrics_before": before,
        "metrics_after": after,
    }


async def open_loop(args: argparse.Namespace, url: str, requests: list[Request]) -> dict[str, Any]:
    """Fixed arrival rate for a bounded time, then concurrency-1 probes for recovery."""
    recorder = Recorder()
    bodies = itertools.cycle(requests)
    connections = max(16, int(args.rate * (args.timeout + 1)))
    async with _client(connections, args.timeout) as client:
        before = await scrape(client, args.url)
        start = time.monotonic()
        tasks = []
        for i in range(int(args.rate * args.duration)):
            await asyncio.sleep(max(0.0, start + i / args.rate - time.monotonic()))
            tasks.append(asyncio.create_task(recorder.send(client, url, next(bodies))))
        overload_end = time.monotonic()
        probes = Recorder()
        while time.monotonic() < overload_end + args.recovery:
            await probes.send(client, url, next(bodies))
        await asyncio.gather(*tasks)
        after = await scrape(client, args.url)
    arrivals = recorder.outcomes
    accepted = [o.latency_s for o in arrivals if o.status == "200"]
    rejected = [o.latency_s for o in arrivals if o.status == "503"]
    return {
        "rate": args.rate,
        "achieved_rate": len(arrivals) / (overload_end - start),
        "duration_s": overload_end - start,
        "requests": len(arrivals),
        "throughput": len(accepted) / (overload_end - start),
        "status_counts": _counts(arrivals),
        "accepted_latency_ms": latency_summary(accepted),
        "rejected_latency_ms": latency_summary(rejected),
        "recovery": _recovery(probes.outcomes, overload_end, args.normal_latency_ms),
        "metrics_before": before,
        "metrics_after": after,
    }


def _recovery(probes: list[Outcome], overload_end: float, normal_ms: float) -> dict[str, Any]:
    """When probe latency came back under 2x the normal concurrency-1 p50, and stayed."""
    threshold_ms = 2 * normal_ms
    recovered_at = None
    for probe in probes:
        slow = probe.status != "200" or probe.latency_s * 1000 > threshold_ms
        if slow:
            recovered_at = None
        elif recovered_at is None:
            recovered_at = probe.sent + probe.latency_s - overload_end
    tail = [
        p.latency_s
        for p in probes
        if p.sent - overload_end > 0.5 * (probes[-1].sent - overload_end)
    ]
    return {
        "threshold_ms": threshold_ms,
        "recovered_after_s": recovered_at,
        "probes": len(probes),
        "probe_status_counts": _counts(probes),
        "late_probe_latency_ms": latency_summary(tail),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("mode", choices=("closed", "open"))
    parser.add_argument("--url", required=True, help="server base URL")
    parser.add_argument("--images", type=Path, required=True, help="folder of .jpg files")
    parser.add_argument("--timeout", type=float, default=60.0, help="client timeout per request")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=10.0, help="open loop: requests/s")
    parser.add_argument("--recovery", type=float, default=10.0, help="open loop: probe seconds")
    parser.add_argument("--normal-latency-ms", type=float, default=100.0)
    parser.add_argument("--request", choices=KINDS, default="classify", help="what to send")
    args = parser.parse_args(argv)
    images = [path.read_bytes() for path in sorted(args.images.glob("*.jpg"))]
    if not images:
        parser.error(f"no .jpg files in {args.images}")
    url, requests = prepare(args.request, args.url, images)
    run = closed_loop if args.mode == "closed" else open_loop
    json.dump(asyncio.run(run(args, url, requests)), sys.stdout)


if __name__ == "__main__":
    main()
