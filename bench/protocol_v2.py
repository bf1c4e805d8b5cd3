"""``python -m bench.protocol_v2``: the Open Inference Protocol (v2) against /classify.

One service process (default settings, a seeded random densenet121 exported as in
`python -m bench run`), the web photos, and for each concurrency (1 and 16) three closed
loops one after another from a separate load-generator process: `classify` (raw JPEG to
/classify), `v2-image` (the JPEG as a BYTES element, binary tensor data) and `v2-fp32`
(the tensor the service would make of it, binary FP32: no decoding on the server), then
`classify` once more at the highest concurrency to show the drift over the run. Both v2
kinds ask for the top 5 (classification extension) as /classify returns them. Writes
``bench/results/NAME.{json,md}``; targets: v2-image >= 0.9x and v2-fp32 >= 1x /classify's
throughput at 16 clients.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import machine, promtext, servers
from bench.cpu import CpuSnapshot, is_noisy, wait_for_quiet
from bench.photos import write_photos
from bench.requests_v2 import KINDS
from bench.runner import prepare_model

RESULTS_DIR = Path(__file__).parent / "results"
TARGETS = {"v2-image": 0.9, "v2-fp32": 1.0}  # x /classify's img/s at the highest concurrency


def measure(
    url: str, photos: Path, kind: str, clients: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One closed-loop step from its own process, with the CPU each side used."""
    command = [sys.executable, "-m", "bench.loadgen", "closed", "--url", url, "--images"]
    command += [str(photos), "--request", kind, "--concurrency", str(clients)]
    command += ["--warmup", str(args.warmup), "--duration", str(args.duration)]
    waited = wait_for_quiet(0.3, args.quiet_wait, lambda m: print(m, flush=True))
    server_pid = args.server_pid
    before = CpuSnapshot.take(server_pid)
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    after = CpuSnapshot.take(server_pid)
    result: dict[str, Any] = json.loads(done.stdout)
    metrics = promtext.deltas(result.pop("metrics_before"), result.pop("metrics_after"))
    return {
        "kind": kind,
        "concurrency": clients,
        **result,
        "mean_batch_size": metrics.get("mean_batch_size"),
        "server_cpu_cores": after.server_cores_since(before),
        "loadgen_cpu_cores": after.harness_cores_since(before),
        "other_cpu_cores": after.other_cores_since(before),
        "waited_for_quiet_s": waited,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = args.results_dir / "tmp" / args.name
    workdir.mkdir(parents=True, exist_ok=True)
    _, model = prepare_model(args.arch, 0, workdir)
    photos = workdir / "photos" / "web"
    write_photos(photos, "web", None)
    port = servers.free_port()
    env = {
        "DENSENET_MODEL_PATH": str(model),
        "DENSENET_HOST": "127.0.0.1",
        "DENSENET_PORT": str(port),
        "DENSENET_GRPC_PORT": "0",  # HTTP only: no second port to collide
        "DENSENET_LOG_LEVEL": "warning",
    }
    server = servers.start(["-m", "app"], env, port, workdir / "server.log", 300.0)
    args.server_pid = server.process.pid
    steps = []
    try:
        plan = [(kind, c) for c in args.concurrencies for kind in KINDS]
        plan.append(("classify", max(args.concurrencies)))
        for kind, clients in plan:
            step = measure(server.url, photos, kind, clients, args)
            print(
                f"{kind} c={clients}: {step['throughput']:.2f} img/s, "
                f"status {step['status_counts']}, other CPU {step['other_cpu_cores']:.2f}",
                flush=True,
            )
            steps.append(step)
    finally:
        server.stop()
    return {
        "name": args.name,
        "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": " ".join(["python -m bench.protocol_v2", *sys.argv[1:]]),
        "machine": machine.describe(),
        "model": {"arch": args.arch, "weights": "random, seed 0", "file": model.name},
        "photos": machine.photo_info({"web": photos}),
        "steps": steps,
        "targets": targets(steps),
    }


def targets(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each v2 kind against /classify at the highest concurrency, with /classify taken as
    the mean of its readings before and after (the host's speed drifts)."""
    top = max(s["concurrency"] for s in steps)
    at_top = [s for s in steps if s["concurrency"] == top]
    classify = [s["throughput"] for s in at_top if s["kind"] == "classify"]
    reference = sum(classify) / len(classify)
    verdicts = []
    for kind, factor in TARGETS.items():
        step = next(s for s in at_top if s["kind"] == kind)
        ratio = step["throughput"] / reference if reference else None
        verdicts.append(
            {
                "kind": kind,
                "concurrency": top,
                "ratio_to_classify": ratio,
                "target": factor,
                "met": ratio is not None and ratio >= factor,
                "noisy": is_noisy(step)
                or any(is_noisy(s) for s in at_top if s["kind"] == "classify"),
            }
        )
    return verdicts


def markdown(result: dict[str, Any]) -> str:
    cpu = result["machine"]["cpu"]["model"]
    lines = [
        f"# Open Inference Protocol (v2) vs /classify: {result['name']}",
        "",
        f"{result['created']}, `{result['command']}`, {result['model']['arch']} "
        f"({result['model']['weights']}), CPU: {cpu}, "
        f"{result['machine']['cpus_available']} CPUs available. The machine is shared: "
        "'other CPU' is what other processes used during each step (noisy above 0.25).",
        "",
        "| request | clients | img/s | p50 ms | p99 ms | status counts | mean batch "
        "| server CPU | load generator CPU | other CPU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in result["steps"]:
        lat = s["latency_ms"]
        batch = s["mean_batch_size"]
        lines.append(
            f"| {s['kind']} | {s['concurrency']} | {s['throughput']:.2f} | {lat['p50'] or 0:.0f} "
            f"| {lat['p99'] or 0:.0f} | {s['status_counts']} | {batch or 0:.2f} "
            f"| {s['server_cpu_cores']:.2f} | {s['loadgen_cpu_cores']:.2f} "
            f"| {s['other_cpu_cores'] or 0:.2f}{' (noisy)' if is_noisy(s) else ''} |"
        )
    lines += ["", "Targets (at the highest concurrency; /classify = mean of its two readings):", ""]
    for t in result["targets"]:
        ratio = "-" if t["ratio_to_classify"] is None else f"{t['ratio_to_classify']:.2f}x"
        verdict = "met" if t["met"] else "NOT met"
        noisy = " (rests on a noisy step)" if t["noisy"] else ""
        lines.append(f"- {t['kind']} >= {t['target']}x /classify: {ratio}, {verdict}{noisy}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.protocol_v2", description=__doc__)
    parser.add_argument("--name", default="protocol_v2")
    parser.add_argument("--arch", default="densenet121")
    parser.add_argument("--concurrencies", default="1,16")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=12.0)
    parser.add_argument("--quiet-wait", type=float, default=20.0)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    args.concurrencies = [int(c) for c in args.concurrencies.split(",")]
    result = run(args)
    (args.results_dir / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    (args.results_dir / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
