"""Soak: mixed good and hostile traffic against a real server for a while; is memory flat?

    .venv/bin/python -m bench.soak --minutes 10 --name densenet121

Starts `python -m app` on a loopback port, keeps `--concurrency` clients busy (closed loop:
each sends its next request when the last one is answered), 1 in `--bad-every` requests
drawn from the hostile corpus (tests/hostile.py) and the rest real photos of a few sizes.
Every request must get the status the corpus documents (good ones 200, overload 503).
Samples the server's RSS every few seconds and writes bench/results/soak-NAME.{json,md,png}:
latency percentiles (overall and per minute), statuses, RSS over time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import shutil
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from tests import hostile, images
from tests.server import start, wait_ready

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Soak:
    started: float = field(default_factory=time.monotonic)
    records: list[tuple[float, str, int, float]] = field(default_factory=list)  # t, kind, status, s
    mismatches: list[str] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)  # t, MiB

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)[1]) / 1024  # type: ignore[index]


def traffic(bad_every: int, seed: int) -> list[hostile.Case]:
    """A shuffled deck of requests; good photos outnumber the hostile cases bad_every - 1 : 1."""
    photos = [
        images.jpeg(w, h, seed=i)
        for i, (w, h) in enumerate([(640, 480), (480, 640), (1024, 768), (320, 240), (1600, 1200)])
    ]
    good = [
        hostile.Case(f"photo_{i}", 200, None, parts=(("file", (f"{i}.jpg", p, "image/jpeg")),))
        for i, p in enumerate(photos)
    ]
    bad = hostile.corpus()
    deck = bad + [good[i % len(good)] for i in range(len(bad) * (bad_every - 1))]
    random.Random(seed).shuffle(deck)
    return deck


async def client(url: str, deck: list[hostile.Case], soak: Soak, until: float, offset: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        i = offset
        while soak.elapsed() < until:
            case = deck[i % len(deck)]
            i += 1
            sent = time.monotonic()
            try:
                status = (await case.send_async(http)).status_code
            except httpx.TransportError as exc:
                soak.mismatches.append(f"{case.name}: {type(exc).__name__}")
                continue
            kind = "good" if case.code is None else "bad"
            soak.records.append((sent - soak.started, kind, status, time.monotonic() - sent))
            if status != case.status and status != 503:  # 503 is the documented overload answer
                soak.mismatches.append(f"{case.name}: {status} (expected {case.status})")


async def sample_rss(pid: int, soak: Soak, until: float, every_s: float) -> None:
    while soak.elapsed() < until:
        soak.rss.append((soak.elapsed(), rss_mb(pid)))
        await asyncio.sleep(every_s)
    soak.rss.append((soak.elapsed(), rss_mb(pid)))


def percentiles(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {}
    values = np.asarray(latencies) * 1e3
    return {f"p{q}": round(float(np.percentile(values, q)), 1) for q in (50, 90, 99)} | {
        "max": round(float(values.max()), 1),
        "n": len(latencies),
    }


def summarize(soak: Soak, args: argparse.Namespace, model: Path) -> dict[str, object]:
    good = [r for r in soak.records if r[1] == "good" and r[2] == 200]
    minutes = int(soak.elapsed() // 60) + 1
    per_minute = [
        {"minute": m, **percentiles([r[3] for r in good if m * 60 <= r[0] < (m + 1) * 60])}
        for m in range(minutes)
    ]
    rss = [mb for _, mb in soak.rss]
    settle = max(1, len(rss) // 10)  # RSS after the first tenth: past warm-up
    return {
        "name": args.name,
        "model": str(model),
        "duration_s": round(soak.elapsed(), 1),
        "concurrency": args.concurrency,
        "bad_every": args.bad_every,
        "server_settings": dict(kv.split("=", 1) for kv in args.setting),
        "requests": len(soak.records),
        "statuses": dict(sorted(Counter(str(r[2]) for r in soak.records).items())),
        "mismatches": soak.mismatches[:50],
        "mismatch_count": len(soak.mismatches),
        "good_latency_ms": percentiles([r[3] for r in good]),
        "bad_latency_ms": percentiles([r[3] for r in soak.records if r[1] == "bad"]),
        "good_latency_ms_per_minute": per_minute,
        "rss_mb": {
            "start": rss[0],
            "after_warmup": rss[settle],
            "end": rss[-1],
            "max": max(rss),
            "growth_after_warmup": round(rss[-1] - rss[settle], 1),
        },
        "rss_samples": [(round(t, 1), round(mb, 1)) for t, mb in soak.rss],
    }


def write_markdown(result: dict[str, object], path: Path) -> None:
    rss, good = result["rss_mb"], result["good_latency_ms"]
    lines = [
        f"# Soak `{result['name']}`",
        "",
        f"{result['duration_s']} s against `{result['model']}`, {result['concurrency']} "
        f"closed-loop clients, 1 in {result['bad_every']} requests hostile "
        f"(tests/hostile.py). Settings: {result['server_settings'] or 'defaults'}.",
        "",
        f"- requests: {result['requests']}, statuses: {result['statuses']}",
        f"- unexpected answers or transport errors: {result['mismatch_count']}",
        f"- good requests, latency ms: {good}",
        f"- hostile requests, latency ms: {result['bad_latency_ms']}",
        f"- RSS MiB: {rss}",
        "",
        "| minute | n | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["good_latency_ms_per_minute"]:  # type: ignore[attr-defined]
        if row.get("n"):
            lines.append(
                f"| {row['minute']} | {row['n']} | {row['p50']} | {row['p90']} | "
                f"{row['p99']} | {row['max']} |"
            )
    lines += ["", f"![latency and RSS over time](soak-{result['name']}.png)", ""]
    path.write_text("\n".join(lines))


def plot(soak: Soak, result: dict[str, object], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    good = [(t, s) for t, kind, status, s in soak.records if kind == "good" and status == 200]
    window = 30.0
    edges = np.arange(0, soak.elapsed() + window, window)
    for q in (50, 90, 99):
        xs, ys = [], []
        for lo in edges[:-1]:
            chunk = [s * 1e3 for t, s in good if lo <= t < lo + window]
            if chunk:
                xs.append((lo + window / 2) / 60)
                ys.append(np.percentile(chunk, q))
        top.plot(xs, ys, marker=".", label=f"p{q}")
    top.set_ylabel("good request latency (ms)")
    top.set_title(
        f"soak {result['name']}: {result['requests']} requests, "
        f"{result['mismatch_count']} unexpected"
    )
    top.legend()
    bottom.plot([t / 60 for t, _ in soak.rss], [mb for _, mb in soak.rss], color="tab:red")
    bottom.set_ylabel("server RSS (MiB)")
    bottom.set_xlabel("minutes")
    bottom.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


async def soak_for(
    url: str, pid: int, deck: list[hostile.Case], soak: Soak, until: float, args: argparse.Namespace
) -> None:
    await asyncio.gather(
        sample_rss(pid, soak, until, args.rss_every_s),
        *(client(url, deck, soak, until, offset=i * 7) for i in range(args.concurrency)),
    )


def default_model() -> Path | None:
    found = sorted(Path("models").glob("densenet121*.onnx"))
    return found[0] if found else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", default="soak")
    parser.add_argument("--model", type=Path, default=default_model())
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--bad-every", type=int, default=5, help="1 in N requests is hostile")
    parser.add_argument("--rss-every-s", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a service setting (DENSENET_FIELD), repeatable",
    )
    args = parser.parse_args(argv)
    if args.model is None or not args.model.exists():
        parser.error("no model: pass --model PATH (e.g. after `make model`)")
    # Threads as in production (0: the CPUs available), not the tests' single thread.
    settings = {
        "intra_op_threads": 0,
        "preprocess_threads": 0,
        **hostile.SETTINGS,
        **dict(kv.split("=", 1) for kv in args.setting),
    }
    deck = traffic(args.bad_every, args.seed)
    until = args.minutes * 60
    log_path = RESULTS / "tmp" / f"soak-{args.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    process, url = start(args.model.resolve(), **settings)
    assert process.stdout is not None
    with log_path.open("w") as log:  # drained, or a full pipe would block the server's logging
        drain = threading.Thread(target=shutil.copyfileobj, args=(process.stdout, log))
        drain.start()
        try:
            wait_ready(process, url, timeout=300)
            soak = Soak()
            print(
                f"soaking {url} for {args.minutes:g} min with {args.concurrency} clients "
                f"(server log: {log_path})",
                file=sys.stderr,
            )
            asyncio.run(soak_for(url, process.pid, deck, soak, until, args))
        finally:
            process.terminate()
            process.wait(timeout=60)
            drain.join(timeout=10)
    result = summarize(soak, args, args.model)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"soak-{args.name}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, stem.with_suffix(".md"))
    plot(soak, result, stem.with_suffix(".png"))
    print(
        json.dumps(
            {
                k: result[k]
                for k in ("requests", "statuses", "mismatch_count", "good_latency_ms", "rss_mb")
            },
            indent=2,
        )
    )
    return 0 if not soak.mismatches else 1


if __name__ == "__main__":
    sys.exit(main())
