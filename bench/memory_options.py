"""RSS and speed of several models in one process under ONNX Runtime's memory options.

``python -m bench.memory_options --repository DIR`` loads every model of a repository
(``DIR/<name>/<version>/model.onnx``, latest version) in one process, with the session
options the service's ONNX Runtime engine uses (app/runtimes/onnxruntime.py) plus one
variant's changes, warms each up as the service does (batch 1 and the batch size) and runs
batches round-robin over the models, as the service's one inference device does under
mixed traffic. Each variant runs in a fresh
process, since RSS only grows within one. Prints and returns one JSON object.

What the variants change, and why it could matter: every session has its own CPU arena
(a BFC allocator that keeps the largest activations it ever held), and a memory pattern
(one preplanned block per input shape). With four models the arenas add up; a shared
arena (``session.use_env_allocators`` with an allocator registered on the environment)
holds one model's peak at a time instead of four.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from app.config import Settings, available_cpus

KIB_PER_MIB = 1024
# kNextPowerOfTwo = 0, kSameAsRequested = 1 (onnxruntime's ArenaExtendStrategy)
SAME_AS_REQUESTED = 1

# name -> (what it changes, session options, shared arena extend strategy or None)
VARIANTS: dict[str, tuple[str, dict[str, bool], int | None]] = {
    "engine": ("the service's own engine loader (the reference)", {}, None),
    "default": ("the engine's session options, rebuilt here (must match 'engine')", {}, None),
    "no-mem-pattern": ("enable_mem_pattern=False", {"enable_mem_pattern": False}, None),
    "no-arena": ("enable_cpu_mem_arena=False", {"enable_cpu_mem_arena": False}, None),
    "no-arena-no-pattern": (
        "enable_cpu_mem_arena=False, enable_mem_pattern=False",
        {"enable_cpu_mem_arena": False, "enable_mem_pattern": False},
        None,
    ),
    "shared-arena": ("one env arena (kNextPowerOfTwo) shared by every session", {}, 0),
    "shared-arena-same-as-requested": (
        "one env arena, arena_extend_strategy=kSameAsRequested",
        {},
        SAME_AS_REQUESTED,
    ),
    "shared-arena-no-pattern": (
        "one env arena (kSameAsRequested), enable_mem_pattern=False",
        {"enable_mem_pattern": False},
        SAME_AS_REQUESTED,
    ),
}


def proc_status_mb(field: str, pid: str = "self") -> float:
    """VmRSS, VmHWM... of a process from /proc, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / KIB_PER_MIB
    raise KeyError(field)


def models_in(repository: Path) -> dict[str, Path]:
    """name -> latest version's model.onnx, for every model in a repository."""
    found = {}
    for model_dir in sorted(p for p in repository.iterdir() if p.is_dir()):
        versions = [d for d in model_dir.iterdir() if d.name.isdigit()]
        if versions:
            found[model_dir.name] = max(versions, key=lambda d: int(d.name)) / "model.onnx"
    return found


def _sessions(variant: str, paths: list[Path], threads: int) -> list[Callable[..., Any]]:
    """One `run(batch)` per model, built as the variant says."""
    import onnxruntime as ort

    if variant == "engine":
        from app.config import Settings
        from app.repository import default_engine_loader

        load = default_engine_loader(Settings(intra_op_threads=threads, precision="fp32"))
        return [load(path).run for path in paths]
    _, changes, shared = VARIANTS[variant]
    if shared is not None:
        info = ort.OrtMemoryInfo(
            "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
        )
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, shared, -1, -1))
    runs = []
    for path in paths:
        options = ort.SessionOptions()  # the engine's options, then the variant's
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        for name, value in changes.items():
            setattr(options, name, value)
        if shared is not None:
            options.add_session_config_entry("session.use_env_allocators", "1")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        runs.append(lambda batch, s=session, n=name: s.run(None, {n: batch})[0])
    return runs


def measure(variant: str, paths: list[Path], batch_size: int, rounds: int) -> dict[str, Any]:
    """In this process: RSS after import, load, warm-up, round-robin batches of the batch
    size (img/s), then one batch of every size up to it per model, as mixed traffic makes.
    """
    import onnxruntime  # noqa: F401  (counted in the starting RSS)

    threads = available_cpus()
    start_mb = proc_status_mb("VmRSS")
    runs = _sessions(variant, paths, threads)
    loaded_mb = proc_status_mb("VmRSS")
    crop, warmup_runs = 224, Settings.model_fields["warmup_runs"].default
    for run in runs:  # the service's warm-up on CPU: batch 1 and the batch size
        for size in sorted({1, batch_size}):
            for _ in range(warmup_runs):
                run(np.zeros((size, 3, crop, crop), dtype=np.float32))
    warm_mb, warm_peak_mb = proc_status_mb("VmRSS"), proc_status_mb("VmHWM")
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((batch_size, 3, crop, crop), np.float32)
    per_model = [0.0] * len(runs)
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        for i, run in enumerate(runs):
            t0 = time.perf_counter()
            run(batch)
            per_model[i] += time.perf_counter() - t0
    elapsed, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    steady_mb, steady_peak_mb = proc_status_mb("VmRSS"), proc_status_mb("VmHWM")
    for run in runs:
        for size in range(1, batch_size + 1):
            run(batch[:size])
    return {
        "variant": variant,
        "threads": threads,
        "rss_start_mb": start_mb,
        "rss_loaded_mb": loaded_mb,
        "rss_warm_mb": warm_mb,
        "peak_warm_mb": warm_peak_mb,
        "rss_steady_mb": steady_mb,
        "peak_steady_mb": steady_peak_mb,
        "rss_end_mb": proc_status_mb("VmRSS"),
        "peak_mb": proc_status_mb("VmHWM"),
        "throughput": rounds * len(runs) * batch_size / elapsed,
        # CPU seconds per image: less sensitive than img/s to other processes on the cores
        "cpu_ms_per_image": 1000 * cpu_s / (rounds * len(runs) * batch_size),
        "batch_ms": [1000 * t / rounds for t in per_model],
    }


def run_all(repository: Path, variants: list[str], batch_size: int, rounds: int) -> dict[str, Any]:
    """Each variant in a fresh process, one after another."""
    models = models_in(repository)
    results = []
    for variant in variants:
        command = [sys.executable, "-m", "bench.memory_options", "--repository", str(repository)]
        command += ["--child", variant, "--batch-size", str(batch_size), "--rounds", str(rounds)]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        result = json.loads(done.stdout) | {"changes": VARIANTS[variant][0]}
        print(
            f"{variant:32s} loaded {result['rss_loaded_mb']:6.0f} MB, warm "
            f"{result['rss_warm_mb']:6.0f} MB, after batch {batch_size} "
            f"{result['rss_steady_mb']:6.0f} MB, after sizes 1-{batch_size} "
            f"{result['rss_end_mb']:6.0f} MB (peak {result['peak_mb']:6.0f} MB), "
            f"{result['throughput']:5.1f} img/s, {result['cpu_ms_per_image']:.0f} CPU ms/img",
            file=sys.stderr,
            flush=True,
        )
        results.append(result)
    return {
        "models": {name: str(path) for name, path in models.items()},
        "model_file_mb": {name: path.stat().st_size / 2**20 for name, path in models.items()},
        "batch_size": batch_size,
        "rounds": rounds,
        "variants": results,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_options", description=__doc__)
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--batch-size", type=int, default=8, help="the service's default: 8")
    parser.add_argument("--rounds", type=int, default=3, help="round-robin passes over models")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        paths = list(models_in(args.repository).values())
        result = measure(args.child, paths, args.batch_size, args.rounds)
    else:
        variants = args.variants.split(",")
        unknown = set(variants) - set(VARIANTS)
        if unknown:
            parser.error(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
        result = run_all(args.repository, variants, args.batch_size, args.rounds)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
