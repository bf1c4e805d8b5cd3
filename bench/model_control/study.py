"""``python -m bench.model_control``: what model control costs, on one server process.

1. Memory: four DenseNets (121, 169, 201, 161; seeded random weights) loaded from a
   repository in explicit mode; resident memory (RSS) with all four, after unloading
   three, after loading them again, for ten cycles.
2. Swaps: a new copy of one model dropped in as version 2 and loaded while clients keep
   classifying with another model: the time from the load request to the new version
   serving, and the other model's latency (p50, p99) during loads against before.

Writes ``bench/results/NAME.{json,md}``. ``--quick`` uses the tiny DenseNet for a smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from bench import machine, servers
from bench.memory_options import proc_status_mb
from bench.photos import make_photos
from bench.runner import prepare_model

RESULTS_DIR = Path(__file__).parent.parent / "results"
KEY = "bench-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
ARCHS = ("densenet121", "densenet169", "densenet201", "densenet161")


def rss_mib(server: servers.Server) -> float:
    return proc_status_mb("VmRSS", str(server.process.pid))


def build_repository(workdir: Path, quick: bool) -> tuple[Path, list[str]]:
    root = workdir / "repository"
    shutil.rmtree(root, ignore_errors=True)
    archs = ["densenet-tiny"] * 4 if quick else list(ARCHS)
    names = [f"m{i}-{arch}" for i, arch in enumerate(archs)]
    for name, arch in zip(names, archs, strict=True):
        _, model = prepare_model(arch, 0, workdir)
        (root / name / "1").mkdir(parents=True)
        shutil.copy(model, root / name / "1" / "model.onnx")
    return root, names


def control(url: str, action: str, name: str) -> float:
    started = time.perf_counter()
    answer = httpx.post(f"{url}/v2/repository/models/{name}/{action}", headers=AUTH, timeout=600)
    answer.raise_for_status()
    return time.perf_counter() - started


def memory_cycles(server: servers.Server, names: list[str], cycles: int) -> dict[str, Any]:
    rows = [{"cycle": 0, "all_loaded_mib": rss_mib(server)}]
    loads: list[float] = []
    for cycle in range(1, cycles + 1):
        for name in names[1:]:
            control(server.url, "unload", name)
        one_loaded = rss_mib(server)
        loads.extend(control(server.url, "load", name) for name in names[1:])
        rows.append(
            {"cycle": cycle, "one_loaded_mib": one_loaded, "all_loaded_mib": rss_mib(server)}
        )
        print(f"cycle {cycle}: {rows[-1]}", flush=True)
    return {"rows": rows, "load_s": loads}


async def traffic(
    url: str, model: str, photo: bytes, clients: int, stop: asyncio.Event
) -> list[tuple[float, float]]:
    """(start time, latency) of each /classify answered 200, until `stop`."""
    done: list[tuple[float, float]] = []

    async def client(http: httpx.AsyncClient) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            answer = await http.post(
                f"{url}/classify?model={model}",
                content=photo,
                headers={"content-type": "image/jpeg", **AUTH},
            )
            if answer.status_code != 200:
                raise RuntimeError(f"{answer.status_code}: {answer.text[:200]}")
            done.append((started, time.perf_counter() - started))

    async with httpx.AsyncClient(timeout=120) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return done


def _quantiles(latencies: list[float]) -> dict[str, float]:
    if len(latencies) < 2:
        return {"n": len(latencies), "p50_ms": float("nan"), "p99_ms": float("nan")}
    cuts = statistics.quantiles(latencies, n=100)
    return {"n": len(latencies), "p50_ms": cuts[49] * 1e3, "p99_ms": cuts[98] * 1e3}


async def swaps(
    server: servers.Server, root: Path, names: list[str], rounds: int, baseline_s: float
) -> dict[str, Any]:
    """Load version 2, 3, ... of names[0] while 4 clients classify with names[1]."""
    jpeg = make_photos("web", limit=1)[0].jpeg
    stop = asyncio.Event()
    load = asyncio.create_task(traffic(server.url, names[1], jpeg, 4, stop))
    await asyncio.sleep(baseline_s)
    windows, load_s = [], []
    for version in range(2, rounds + 2):
        target = root / names[0] / str(version)
        shutil.copytree(root / names[0] / "1", target)
        started = time.perf_counter()
        load_s.append(await asyncio.to_thread(control, server.url, "load", names[0]))
        windows.append((started, time.perf_counter()))
        await asyncio.sleep(1.0)
    stop.set()
    answered = await load
    during = [lat for t, lat in answered if any(a <= t <= b for a, b in windows)]
    before = [lat for t, lat in answered if t < windows[0][0]]
    return {"load_s": load_s, "before": _quantiles(before), "during": _quantiles(during)}


def _row(label: str, figures: dict[str, float]) -> str:
    return f"| {label} | {figures['n']} | {figures['p50_ms']:.0f} | {figures['p99_ms']:.0f} |"


def report(result: dict[str, Any]) -> str:
    memory, swap, models = result["memory"], result["swaps"], result["models"]
    rows = memory["rows"]
    first, last = rows[1], rows[-1]
    held_by_three = last["all_loaded_mib"] - last["one_loaded_mib"]
    lines = [
        f"# Model control: memory and swaps ({result['name']})",
        "",
        f"{result['date']}, `{result['command']}`, CPU: {result['machine']['cpu']['model']}, "
        f"{result['machine']['cpus_available']} CPUs available. Models: {', '.join(models)} "
        "(seeded random weights), explicit mode, default settings otherwise.",
        "",
        "## Memory (RSS, MiB)",
        "",
        "| cycle | four loaded | one loaded (three unloaded) |",
        "|---|---|---|",
        f"| start | {rows[0]['all_loaded_mib']:.0f} | |",
        *(
            f"| {r['cycle']} | {r['all_loaded_mib']:.0f} | {r['one_loaded_mib']:.0f} |"
            for r in rows[1:]
        ),
        "",
        f"From cycle 1 to cycle {last['cycle']}: four loaded "
        f"{last['all_loaded_mib'] - first['all_loaded_mib']:+.1f} MiB, one loaded "
        f"{last['one_loaded_mib'] - first['one_loaded_mib']:+.1f} MiB; from cycle 3 on, four "
        f"loaded stays within {min(r['all_loaded_mib'] for r in rows[3:]):.0f}-"
        f"{max(r['all_loaded_mib'] for r in rows[3:]):.0f} MiB and one loaded within "
        f"{min(r['one_loaded_mib'] for r in rows[3:]):.0f}-"
        f"{max(r['one_loaded_mib'] for r in rows[3:]):.0f}. Unloading three gives "
        f"back {held_by_three:.0f} MiB. Each load (file to warm): median "
        f"{statistics.median(memory['load_s']):.2f} s.",
        "",
        "## Swaps",
        "",
        f"From the load request to the new version serving (copies of {models[0]}): "
        + ", ".join(f"{s:.2f} s" for s in swap["load_s"])
        + ".",
        "",
        f"| {models[1]} /classify, 4 clients | answers | p50 ms | p99 ms |",
        "|---|---|---|---|",
        _row("before the loads", swap["before"]),
        _row("during the loads", swap["during"]),
        "",
        "Every request was answered 200 (the run stops on any other answer).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.model_control", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny models, 3 cycles")
    parser.add_argument("--name", default="model-control")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    workdir = args.results_dir / "tmp" / args.name
    workdir.mkdir(parents=True, exist_ok=True)
    root, names = build_repository(workdir, args.quick)
    port = servers.free_port()
    env = {
        "DENSENET_MODEL_REPOSITORY": str(root),
        "DENSENET_DEFAULT_MODEL": names[0],
        "DENSENET_MODEL_CONTROL": "explicit",
        "DENSENET_API_KEY": KEY,
        "DENSENET_PORT": str(port),
        "DENSENET_GRPC_PORT": "0",
    }
    server = servers.start(["-m", "app"], env, port, workdir / "server.log", 600)
    try:
        memory = memory_cycles(server, names, 3 if args.quick else 10)
        swap = asyncio.run(
            swaps(server, root, names, 2 if args.quick else 5, 3 if args.quick else 10)
        )
    finally:
        server.stop()
    result = {
        "name": args.name,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": "python -m bench.model_control" + (" --quick" if args.quick else ""),
        "machine": machine.describe(),
        "models": names,
        "memory": memory,
        "swaps": swap,
    }
    (args.results_dir / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.results_dir / f"{args.name}.md").write_text(report(result))
    print(report(result))
