"""Engine-only ceiling: ONNX Runtime on pre-made tensors, no HTTP, no image decoding.

Run: ``python -m bench.engine_ceiling --model M.onnx --threads 2 --batch-sizes 1,4,8``

Uses the service's session options (graph optimisation ALL, sequential, ``--threads``
intra-op threads, one inter-op thread) and runs batches back to back for ``--seconds``
per batch size. Prints one JSON object: img/s and per-run latency for each batch size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from typing import Any

import numpy as np
import onnxruntime as ort

from bench.stats import latency_summary


def session(model: str, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def measure(sess: ort.InferenceSession, batch_size: int, seconds: float) -> dict[str, Any]:
    """Back-to-back runs of one batch size (after two warm-up runs)."""
    name = sess.get_inputs()[0].name
    rng = np.random.default_rng(batch_size)
    batch = rng.standard_normal((batch_size, 3, 224, 224), dtype=np.float32)
    for _ in range(2):
        sess.run(None, {name: batch})
    run_times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(run_times) < 3:
        begin = time.perf_counter()
        sess.run(None, {name: batch})
        run_times.append(time.perf_counter() - begin)
    return {
        "batch_size": batch_size,
        "runs": len(run_times),
        "throughput": batch_size * len(run_times) / sum(run_times),
        "latency_ms": latency_summary(run_times),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_ceiling", description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=0, help="0 = the CPUs available")
    parser.add_argument("--batch-sizes", default="1,2,4,8,16")
    parser.add_argument("--seconds", type=float, default=4.0, help="per batch size")
    args = parser.parse_args(argv)
    threads = args.threads or len(os.sched_getaffinity(0))
    sess = session(args.model, threads)
    results = []
    for size in (int(s) for s in args.batch_sizes.split(",")):
        results.append(measure(sess, size, args.seconds))
        print(f"    batch {size:3}: {results[-1]['throughput']:7.1f} img/s", file=sys.stderr)
    best = max(results, key=lambda r: r["throughput"])
    json.dump(
        {
            "threads": threads,
            "batch_sizes": results,
            "best_batch_size": best["batch_size"],
            "throughput": best["throughput"],
            "batch1_latency_ms": results[0]["latency_ms"]
            if results[0]["batch_size"] == 1
            else None,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
