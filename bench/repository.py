"""``python -m bench.repository --name repository [--smoke]``: several models, one service.

Exports seeded random checkpoints of the four DenseNets into a model repository
(``DIR/<arch>/1/model.onnx``, reused when already there), then measures, each server in its
own process:

1. ``single``: a repository holding only the reference model (densenet121): RSS idle after
   warm-up, then N clients on it (throughput, p50/p99, mean batch, peak RSS).
2. ``all``: one service on the four-model repository: RSS idle after warm-up, N clients on
   each model alone (the reference model first: the same load as in 1), then N clients
   spread evenly over the four models (the mixed-model figure: total and per model).
3. ``bench/memory_options.py`` on the same repository: RSS and img/s of the four models in
   one process under ONNX Runtime's memory options.

Writes ``bench/results/NAME.{json,md,png}``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench import machine, memory_options, promtext, repository_report, servers
from bench.cpu import CpuSnapshot, wait_for_quiet
from bench.photos import write_photos
from bench.runner import Progress

RESULTS_DIR = Path(__file__).parent / "results"
DENSENETS = ("densenet121", "densenet161", "densenet169", "densenet201")


@dataclass(frozen=True)
class RepoPlan:
    models: tuple[tuple[str, str, int], ...]  # (name in the repository, arch, seed)
    reference: str  # the single-model reference, also the service's default model
    clients: int
    warmup_s: float
    duration_s: float
    photos: int | None  # web photos; None: every bundled photo
    ready_timeout_s: float
    quiet_wait_s: float  # per step, most time to wait for other processes to go idle
    memory_rounds: int  # 0: skip the memory-options step


FULL = RepoPlan(
    models=tuple((arch, arch, 0) for arch in DENSENETS),
    reference="densenet121",
    clients=16,
    warmup_s=4.0,
    duration_s=15.0,
    photos=None,
    ready_timeout_s=600.0,
    quiet_wait_s=10.0,
    memory_rounds=3,
)
SMOKE = RepoPlan(
    models=(("tiny-a", "densenet-tiny", 0), ("tiny-b", "densenet-tiny", 1)),
    reference="tiny-a",
    clients=4,
    warmup_s=0.5,
    duration_s=2.0,
    photos=2,
    ready_timeout_s=60.0,
    quiet_wait_s=0.0,
    memory_rounds=1,
)


def export_repository(plan: RepoPlan, root: Path) -> tuple[Path, Path]:
    """The full repository and a one-model repository of the reference (a hard link)."""
    full, single = root / "models", root / "single"
    for name, arch, seed in plan.models:
        target = full / name / "1" / "model.onnx"
        if not target.exists():
            command = ["-m", "model_export", "export", "--arch", arch, "--weights", "random"]
            command += ["--seed", str(seed), "--output", str(target)]
            subprocess.run([sys.executable, *command], check=True)
    link = single / plan.reference / "1" / "model.onnx"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        os.link(full / plan.reference / "1" / "model.onnx", link)
    return full, single


def start(repository: Path, plan: RepoPlan, log: Path) -> servers.Server:
    port = servers.free_port()
    env = {
        "DENSENET_MODEL_REPOSITORY": str(repository),
        "DENSENET_DEFAULT_MODEL": plan.reference,
        "DENSENET_HOST": "127.0.0.1",
        "DENSENET_PORT": str(port),
        "DENSENET_GRPC_PORT": "0",  # HTTP only: no second port to collide
        "DENSENET_LOG_LEVEL": "warning",
    }
    return servers.start(["-m", "app"], env, port, log, plan.ready_timeout_s)


def rss_mb(server: servers.Server) -> float:
    return memory_options.proc_status_mb("VmRSS", str(server.process.pid))


def load_step(
    server: servers.Server, models: list[str], plan: RepoPlan, photos: Path, say: Progress
) -> dict[str, Any]:
    """`plan.clients` clients spread over `models`, from a separate process."""
    command = ["-m", "bench.mixedload", "--url", server.url, "--images", str(photos)]
    command += ["--models", ",".join(models), "--concurrency", str(plan.clients)]
    command += ["--warmup", str(plan.warmup_s), "--duration", str(plan.duration_s)]
    waited = wait_for_quiet(0.3, plan.quiet_wait_s, say)
    server.reset_peak_rss()
    before = CpuSnapshot.take(server.process.pid)
    done = subprocess.run([sys.executable, *command], check=True, capture_output=True, text=True)
    after = CpuSnapshot.take(server.process.pid)
    result: dict[str, Any] = json.loads(done.stdout)
    scrapes = result.pop("metrics_before"), result.pop("metrics_after")
    result["metrics"] = promtext.deltas(*scrapes)
    for model, metrics in promtext.deltas_by_model(*scrapes).items():
        if model in result["per_model"]:
            result["per_model"][model]["metrics"] = metrics
    return result | {
        "peak_rss_mb": server.peak_rss_mb(),
        "rss_after_mb": rss_mb(server),
        "server_cpu_cores": after.server_cores_since(before),
        "loadgen_cpu_cores": after.harness_cores_since(before),
        "other_cpu_cores": after.other_cores_since(before),
        "waited_for_quiet_s": waited,
        "server_alive": server.process.poll() is None,
    }


def run_server(
    label: str,
    repository: Path,
    traffic: list[list[str]],
    plan: RepoPlan,
    photos: Path,
    say: Progress,
) -> dict[str, Any]:
    """One service on `repository`: idle RSS after warm-up, then one step per traffic mix."""
    say(f"{label}: starting on {repository}")
    server = start(repository, plan, photos.parent.parent / "logs" / f"{label}.log")
    try:
        time.sleep(1.0)  # let the first /health/ready answer's allocations settle
        idle = {"rss_mb": rss_mb(server), "peak_rss_mb": server.peak_rss_mb()}
        models = [m["name"] for m in httpx_get(server.url + "/models")["models"]]
        say(f"{label}: ready after {server.cold_start_s:.1f} s, idle RSS {idle['rss_mb']:.0f} MB")
        steps = []
        for models_used in traffic:
            step = load_step(server, models_used, plan, photos, say)
            steps.append(step)
            batches = ", ".join(
                f"{m} {p.get('metrics', {}).get('mean_batch_size') or 0:.2f}"
                for m, p in step["per_model"].items()
            )
            say(
                f"{label}: {plan.clients} clients on {'+'.join(models_used)}: "
                f"{step['throughput']:.1f} img/s, p99 {step['latency_ms']['p99'] or 0:.0f} ms, "
                f"mean batch {batches}, peak RSS {step['peak_rss_mb'] or 0:.0f} MB, "
                f"other processes {step['other_cpu_cores'] or 0:.2f} cores",
                step=True,
            )
    finally:
        server.stop()
    return {"cold_start_s": server.cold_start_s, "models": models, "idle": idle, "steps": steps}


def httpx_get(url: str) -> dict[str, Any]:
    import httpx

    response = httpx.get(url, timeout=30.0)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def run(plan: RepoPlan, name: str, results_dir: Path) -> dict[str, Any]:
    started = time.monotonic()
    work = results_dir / "tmp" / name
    names = [m[0] for m in plan.models]
    others = [n for n in names if n != plan.reference]
    say = Progress(2 + len(names) + 1 + (plan.memory_rounds > 0))
    say(f"exporting {', '.join(names)} (seeded random weights) unless already there")
    full, single = export_repository(plan, work)
    photos = work / "photos" / "web"
    write_photos(photos, "web", plan.photos)
    say(f"repository {full}", step=True)
    servers_run = {
        "single": run_server("single", single, [[plan.reference]], plan, photos, say),
        "all": run_server(
            "all", full, [[plan.reference], *[[n] for n in others], names], plan, photos, say
        ),
    }
    memory: dict[str, Any] | None = None
    if plan.memory_rounds > 0:
        say("memory options: each variant in its own process")
        memory = memory_options.run_all(full, list(memory_options.VARIANTS), 8, plan.memory_rounds)
        say("memory options done", step=True)
    return {
        "name": name,
        "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": " ".join(["python -m bench.repository", *sys.argv[1:]]),
        "machine": machine.describe(),
        "plan": asdict(plan),
        "model_file_mb": {n: (full / n / "1" / "model.onnx").stat().st_size / 2**20 for n in names},
        "servers": servers_run,
        "memory_options": memory,
        "duration_s": time.monotonic() - started,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.repository", description=__doc__)
    parser.add_argument("--name", default="repository-latest", help="results file stem")
    parser.add_argument("--smoke", action="store_true", help="two tiny models, seconds per step")
    parser.add_argument("--clients", type=int, help="closed-loop clients per step")
    parser.add_argument("--duration", type=float, help="seconds measured per step")
    parser.add_argument("--no-memory-options", action="store_true")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--report", action="store_true", help="only redo NAME.md/.png")
    args = parser.parse_args(argv)
    if args.report:
        result = json.loads((args.results_dir / f"{args.name}.json").read_text())
        print("wrote " + ", ".join(map(str, repository_report.write(result, args.results_dir))))
        return
    plan = SMOKE if args.smoke else FULL
    plan = replace(
        plan,
        clients=args.clients or plan.clients,
        duration_s=args.duration or plan.duration_s,
        memory_rounds=0 if args.no_memory_options else plan.memory_rounds,
    )
    result = run(plan, args.name, args.results_dir)
    paths = repository_report.write(result, args.results_dir)
    print(repository_report.markdown(result))
    print("wrote " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
