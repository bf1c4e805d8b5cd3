"""Engine-only ceiling: the service's own engine on pre-made tensors, no HTTP, no decoding.

Run: ``python -m bench.engine_ceiling --model M.onnx --threads 2 --batch-sizes 1,4,8
[--precision bf16]``

Loads the model exactly as the service does for ``DENSENET_PRECISION=--precision``
(`app.repository.default_engine_loader`: ONNX Runtime with the service's session options,
or OpenVINO for bf16), with ``--threads`` intra-op threads, and runs batches back to back
for ``--seconds`` per batch size. Prints one JSON object: img/s, per-run latency and this
process's CPU time per image for each batch size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.config import Settings
from app.engine import Engine
from app.repository import default_engine_loader
from bench.stats import latency_summary


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load(model: Path, threads: int, precision: str) -> Engine:
    settings = Settings(
        model_path=model,
        intra_op_threads=threads,
        precision=precision,  # type: ignore[arg-type]
    )
    return default_engine_loader(settings)(model)


def measure(engine: Engine, batch_size: int, seconds: float) -> dict[str, Any]:
    """Back-to-back runs of one batch size (after two warm-up runs)."""
    crop = engine.spec.recipe.crop_size
    rng = np.random.default_rng(batch_size)
    batch = rng.standard_normal((batch_size, 3, crop, crop), dtype=np.float32)
    for _ in range(2):
        engine.run(batch)
    run_times: list[float] = []
    cpu_before, start = _cpu_s(), time.perf_counter()
    while time.perf_counter() - start < seconds or len(run_times) < 3:
        begin = time.perf_counter()
        engine.run(batch)
        run_times.append(time.perf_counter() - begin)
    cpu_s = _cpu_s() - cpu_before
    images = batch_size * len(run_times)
    return {
        "batch_size": batch_size,
        "runs": len(run_times),
        "throughput": images / sum(run_times),
        "latency_ms": latency_summary(run_times),
        "cpu_ms_per_image": 1000 * cpu_s / images,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_ceiling", description=__doc__)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--threads", type=int, default=0, help="0 = the CPUs available")
    parser.add_argument("--batch-sizes", default="1,2,4,8,16")
    parser.add_argument("--seconds", type=float, default=4.0, help="per batch size")
    parser.add_argument("--precision", default="fp32", help="as DENSENET_PRECISION")
    args = parser.parse_args(argv)
    threads = args.threads or len(os.sched_getaffinity(0))
    engine = load(args.model, threads, args.precision)
    results = []
    for size in (int(s) for s in args.batch_sizes.split(",")):
        results.append(measure(engine, size, args.seconds))
        print(
            f"    {engine.precision} batch {size:3}: {results[-1]['throughput']:7.1f} img/s",
            file=sys.stderr,
        )
    best = max(results, key=lambda r: r["throughput"])
    json.dump(
        {
            "threads": threads,
            "precision": engine.precision,
            "runtime": engine.runtime,
            "providers": engine.providers,
            "batch_sizes": results,
            "best_batch_size": best["batch_size"],
            "throughput": best["throughput"],
            "cpu_ms_per_image": best["cpu_ms_per_image"],
            "batch1_latency_ms": results[0]["latency_ms"]
            if results[0]["batch_size"] == 1
            else None,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
