"""``python -m bench.protocols``: the service's protocol fronts side by side, in one run.

One service process (default settings, HTTP and gRPC on free ports) serving a seeded random
densenet121 (exported as ``python -m bench run`` does; ``--model FILE`` serves any exported
model instead) and one web photo, measured as:

- ``grpc`` and ``http-v2``: Triton's perf_analyzer (bench/perf_analyzer/install.sh) with
  ``-i grpc`` / ``-i http``, for the FP32 tensor (the photo preprocessed by the model's own
  recipe) and for ``image`` (the photo as a BYTES element), each named by
  ``--input-data FILE`` (bench/perf_analyzer/study.py says why);
- ``classify``: the project's load generator (bench/loadgen.py) posting the photo to
  ``/classify``, the reference;

at 1 and 16 clients, in two rounds (the second in reverse order; medians reported), with
the server's CPU per image split into the engine's and the front's (server_cpu.py). Before
measuring, a few requests of each kind go through a recording relay (wire.py), so the
report shows how each is encoded. Writes ``bench/results/NAME.{json,md}`` (report.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from app.config import available_cpus
from bench import machine, protocol_v2, servers
from bench.cpu import CpuSnapshot, is_noisy
from bench.perf_analyzer import study as perf_analyzer
from bench.photos import write_photos
from bench.protocols import report, server_cpu, wire
from bench.runner import Patience, prepare_model

RESULTS_DIR = Path(__file__).parent.parent / "results"
TOOL_PROTOCOL = {"grpc": "grpc", "http-v2": "http"}  # row name -> perf_analyzer's -i
CLASSIFY = "classify"


@dataclass(frozen=True)
class Timing:
    """perf_analyzer's window, the spread it allows 3 windows in a row and its tries; the
    load generator's warm-up and window; the engine alone's seconds per batch size; the
    most a run spends waiting for a quiet machine."""

    window_ms: int = 4000
    stability_pct: int = 25
    max_trials: int = 5
    warmup_s: float = 3.0
    duration_s: float = 10.0
    engine_s: float = 4.0
    patience_s: float = 120.0


QUICK = Timing(1000, 100, 6, 0.5, 2.0, 0.5, 0.0)


class Study:
    """The running server and what every step needs."""

    def __init__(self, tool: Path, timing: Timing, server: servers.Server, grpc_port: int) -> None:
        self.tool, self.timing, self.server, self.grpc_port = tool, timing, server, grpc_port
        self.patience = Patience(timing.patience_s)
        self.description = httpx.get(f"{server.url}/model", timeout=30).json()
        self.model = self.description["name"]

    def address(self, protocol: str) -> str:
        return f"127.0.0.1:{self.grpc_port}" if protocol == "grpc" else self.server.url

    def upstream_port(self, protocol: str) -> int:
        return int(self.address(protocol).rpartition(":")[2])

    def encoding(self, protocol: str, data: Path) -> str:
        """How perf_analyzer encodes a request of this protocol and input (wire.py)."""
        tool_protocol = TOOL_PROTOCOL[protocol]
        port = self.upstream_port(protocol)
        captured = wire.capture(self.tool, tool_protocol, port, self.model, data)
        return wire.describe(tool_protocol, captured)

    def perf_analyzer(self, protocol: str, data: Path, clients: int) -> dict[str, Any]:
        t = self.timing
        step = perf_analyzer.measure(
            self.tool, self.address(protocol), self.model, data, clients,
            argparse.Namespace(window_ms=t.window_ms), protocol=TOOL_PROTOCOL[protocol],
            stability_percentage=t.stability_pct, max_trials=t.max_trials,
        )  # fmt: skip
        return {
            "throughput": step["throughput"],
            "p50_ms": step["p50_us"] / 1e3,
            "p99_ms": step["p99_us"] / 1e3,
            "stable": step["stable"],
            # the server's own breakdown, read by perf_analyzer from the statistics extension
            **{k: v for k, v in step.items() if k.startswith("server_")},
        }

    def classify(self, photos: Path, clients: int) -> dict[str, Any]:
        load = argparse.Namespace(
            warmup=self.timing.warmup_s, duration=self.timing.duration_s,
            quiet_wait=0.0, server_pid=self.server.process.pid,
        )  # fmt: skip
        step = protocol_v2.measure(self.server.url, photos, CLASSIFY, clients, load)
        return {
            "throughput": step["throughput"],
            "p50_ms": step["latency_ms"]["p50"],
            "p99_ms": step["latency_ms"]["p99"],
            "status_counts": step["status_counts"],
        }

    def step(self, config: tuple[str, str, int], files: dict[str, Path]) -> dict[str, Any]:
        """One configuration, with the server's CPU per image over the same span."""
        protocol, kind, clients = config
        waited = self.patience.wait_for_quiet(20.0, lambda m: print(m, flush=True))
        pid, url = self.server.process.pid, self.server.url
        cpu_before, before = CpuSnapshot.take(pid), server_cpu.Sample.take(pid, url)
        try:
            if protocol == CLASSIFY:
                load = self.classify(files["photos"], clients)
            else:
                load = self.perf_analyzer(protocol, files[kind], clients)
        except perf_analyzer.Failed as exc:
            load = {"throughput": None, "error": wire.reasons(str(exc))}
        after, cpu_after = server_cpu.Sample.take(pid, url), CpuSnapshot.take(pid)
        groups = server_cpu.thread_groups(pid)
        return {
            "protocol": protocol,
            "input": kind,
            "clients": clients,
            **load,
            **server_cpu.per_image(before, after, groups),
            "client_cpu_cores": cpu_after.harness_cores_since(cpu_before),
            "other_cpu_cores": cpu_after.other_cores_since(cpu_before),
            "waited_for_quiet_s": waited,
        }


def plan(
    inputs: list[str], concurrencies: list[int], rounds: int
) -> list[tuple[int, tuple[str, str, int]]]:
    """(round, configuration): every configuration once per round, every other round in
    reverse order, so that drift over the run does not favour one protocol."""
    configs = [
        (protocol, kind, clients)
        for clients in concurrencies
        for protocol in [*TOOL_PROTOCOL, CLASSIFY]
        for kind in (inputs if protocol != CLASSIFY else ["image"])
    ]
    return [(r, c) for r in range(rounds) for c in (configs if r % 2 == 0 else configs[::-1])]


def engine_alone(model: Path, batch_sizes: list[int], seconds: float) -> dict[int, float]:
    """The engine in its own process (bench/engine_ceiling.py): CPU ms per image by batch."""
    if not batch_sizes:
        return {}  # no row was measured
    command = [sys.executable, "-m", "bench.engine_ceiling", "--model", str(model)]
    command += ["--threads", str(available_cpus()), "--seconds", str(seconds)]
    command += ["--batch-sizes", ",".join(str(b) for b in batch_sizes)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    sizes = json.loads(done.stdout)["batch_sizes"]
    return {s["batch_size"]: s["cpu_ms_per_image"] for s in sizes}


def start_server(model: Path, workdir: Path) -> tuple[servers.Server, int]:
    port, grpc_port = servers.free_port(), servers.free_port()
    while grpc_port == port:
        grpc_port = servers.free_port()
    env = {
        "DENSENET_MODEL_PATH": str(model),
        "DENSENET_HOST": "127.0.0.1",
        "DENSENET_PORT": str(port),
        "DENSENET_GRPC_PORT": str(grpc_port),
        "DENSENET_LOG_LEVEL": "warning",
    }
    return servers.start(["-m", "app"], env, port, workdir / "server.log", 300.0), grpc_port


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    workdir = args.results_dir / "tmp" / args.name
    workdir.mkdir(parents=True, exist_ok=True)
    tool, timing = perf_analyzer.install(), QUICK if args.quick else Timing()
    model = args.model.resolve() if args.model else prepare_model(args.arch, 0, workdir)[1]
    photo = write_photos(workdir / "photo", "web", 1)[0]
    server, grpc_port = start_server(model, workdir)
    try:
        study = Study(tool, timing, server, grpc_port)
        data = perf_analyzer.write_data(workdir, photo, server.url, study.model)
        files = {"photos": photo.parent, **data}
        inputs = sorted(data, key=lambda k: k == "image")  # the FP32 tensor first
        encodings = {
            f"{protocol} {kind}": study.encoding(protocol, files[kind])
            for protocol in TOOL_PROTOCOL
            for kind in inputs
        }
        rows = []
        steps = plan(inputs, args.concurrencies, args.rounds)
        for i, (round_index, config) in enumerate(steps, 1):
            rows.append({"round": round_index, **study.step(config, files)})
            print(report.progress(i, len(steps), time.monotonic() - started, rows[-1]), flush=True)
    finally:
        server.stop()
    summary = report.summarize(rows)
    batches = sorted({max(1, round(s["mean_batch_size"])) for s in summary if s["mean_batch_size"]})
    return {
        "name": args.name,
        "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": " ".join(["python -m bench.protocols", *sys.argv[1:]]),
        "machine": machine.describe(),
        "perf_analyzer": report.tool_version(tool),
        "model": {"file": model.name, **study.description},
        "photo": {"file": photo.name, "bytes": photo.stat().st_size},
        "timing": asdict(timing),
        "rounds": args.rounds,
        "encodings": encodings,
        "rows": rows,
        "summary": summary,
        "engine_alone_cpu_ms_per_image": engine_alone(model, batches, timing.engine_s),
        "targets": report.targets(summary, inputs[0], max(args.concurrencies)),
        "noisy_rows": sum(is_noisy(r) for r in rows),
        "duration_s": time.monotonic() - started,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.protocols", description=__doc__)
    parser.add_argument("--name", default="protocols")
    parser.add_argument("--arch", default="densenet121", help="exported with random weights")
    parser.add_argument("--model", type=Path, help="serve this exported .onnx instead")
    parser.add_argument("--concurrencies", default="1,16")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="short windows: a smoke run")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    args.concurrencies = [int(c) for c in args.concurrencies.split(",")]
    result = run(args)
    (args.results_dir / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    text = report.markdown(result)
    (args.results_dir / f"{args.name}.md").write_text(text)
    print(text)
