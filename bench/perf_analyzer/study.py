"""``python -m bench.perf_analyzer``: Triton's own benchmark tool against the v2 REST front.

One service process (default settings, a seeded random densenet121 as `python -m bench
run` exports it), perf_analyzer (installed by ``bench/perf_analyzer/install.sh``, which
says how it runs on this Debian) in concurrency mode over HTTP, for each input the model
metadata lists: ``image`` (a web photo as a BYTES element: the server decodes and
preprocesses it) and the FP32 tensor (that photo preprocessed as the service would: no
decoding on the server), at each concurrency. perf_analyzer reads the statistics
extension for its server-side breakdown. Writes ``bench/results/NAME.{json,md}``.

Why ``--input-data FILE``: perf_analyzer's default random data sends every listed input
(the request must carry one), and random FP32 bytes include NaN and infinity, which the
service refuses (a model fed them can only answer NaN).
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from app.model_spec import Recipe
from app.preprocess import preprocess
from bench import machine, servers
from bench.photos import write_photos
from bench.runner import prepare_model

HERE = Path(__file__).parent
RESULTS_DIR = HERE.parent / "results"
COLUMNS = {  # perf_analyzer's CSV column -> our name (latencies in microseconds)
    "Inferences/Second": "throughput",
    "p50 latency": "p50_us",
    "p99 latency": "p99_us",
    "Server Queue": "server_queue_us",
    "Server Compute Input": "server_compute_input_us",
    "Server Compute Infer": "server_compute_infer_us",
}


def install() -> Path:
    done = subprocess.run(
        ["bash", str(HERE / "install.sh")], check=True, capture_output=True, text=True
    )
    return Path(done.stdout.strip().splitlines()[-1]).resolve()


def write_data(workdir: Path, photo: Path, url: str, model: str) -> dict[str, Path]:
    """perf_analyzer's JSON input data: the photo as a BYTES element (b64 of the serialized
    tensor: a 4-byte little-endian length, then the bytes), and as the FP32 tensor that
    the model's own recipe makes of it (read from GET /models/NAME)."""
    jpeg = photo.read_bytes()
    element = base64.b64encode(struct.pack("<I", len(jpeg)) + jpeg).decode()
    info = httpx.get(f"{url}/models/{model}", timeout=30).json()
    prep = info["preprocessing"]
    recipe = Recipe(
        prep["resize_size"],
        prep["crop_size"],
        prep["interpolation"],
        tuple(prep["mean"]),
        tuple(prep["std"]),
    )
    tensor = preprocess(jpeg, recipe, 10**8)
    metadata = httpx.get(f"{url}/v2/models/{model}", timeout=30).json()
    fp32 = next(i["name"] for i in metadata["inputs"] if i["datatype"] == "FP32")
    files = {"image": workdir / "image.json", fp32: workdir / "tensor.json"}
    files["image"].write_text(json.dumps({"data": [{"image": {"b64": element}}]}))
    content = {"content": tensor.ravel().tolist(), "shape": list(tensor.shape)}
    files[fp32].write_text(json.dumps({"data": [{fp32: content}]}))
    return files


class Failed(RuntimeError):
    """perf_analyzer ended without a result (its output's tail says why)."""


def measure(
    tool: Path,
    url: str,
    model: str,
    data: Path,
    clients: int,
    args: argparse.Namespace,
    *,
    protocol: str = "http",
    stability_percentage: int = 25,
    max_trials: int = 6,
) -> dict[str, Any]:
    """One concurrency step; `url` is host:port (an http:// prefix is dropped), `protocol`
    perf_analyzer's -i (http or grpc)."""
    csv_path = data.with_suffix(f".{protocol}.c{clients}.csv")
    csv_path.unlink(missing_ok=True)  # a file left by an earlier run is not this result
    command = [str(tool), "-m", model, "-u", url.removeprefix("http://"), "-i", protocol]
    command += ["--input-data", str(data), "--concurrency-range", f"{clients}:{clients}"]
    command += ["--measurement-interval", str(args.window_ms), "--max-trials", str(max_trials)]
    command += ["--stability-percentage", str(stability_percentage), "-f", str(csv_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 and not csv_path.exists():
        raise Failed(f"perf_analyzer failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    [row] = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    step: dict[str, Any] = {"concurrency": clients, "stable": done.returncode == 0}
    step.update({ours: float(row[theirs]) for theirs, ours in COLUMNS.items()})
    return step


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = args.results_dir / "tmp" / args.name
    workdir.mkdir(parents=True, exist_ok=True)
    tool = install()
    _, model_file = prepare_model(args.arch, 0, workdir)
    photo = write_photos(workdir / "photos", "web", 1)[0]
    port = servers.free_port()
    env = {
        "DENSENET_MODEL_PATH": str(model_file),
        "DENSENET_HOST": "127.0.0.1",
        "DENSENET_PORT": str(port),
        "DENSENET_GRPC_PORT": "0",  # HTTP only: no second port to collide
        "DENSENET_LOG_LEVEL": "warning",
    }
    server = servers.start(["-m", "app"], env, port, workdir / "server.log", 300.0)
    steps = []
    try:
        model = args.arch
        files = write_data(workdir, photo, server.url, model)
        for kind, data in files.items():
            for clients in args.concurrencies:
                step = {"input": kind, **measure(tool, server.url, model, data, clients, args)}
                print(f"{kind} c={clients}: {step['throughput']:.2f} infer/s", flush=True)
                steps.append(step)
    finally:
        server.stop()
    version = subprocess.run([str(tool), "--version"], capture_output=True, text=True)
    return {
        "name": args.name,
        "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": " ".join(["python -m bench.perf_analyzer", *sys.argv[1:]]),
        "machine": machine.describe(),
        "perf_analyzer": (version.stdout + version.stderr).strip(),
        "model": {"arch": args.arch, "weights": "random, seed 0", "file": model_file.name},
        "photo": photo.name,
        "steps": steps,
    }


def markdown(result: dict[str, Any]) -> str:
    cpu = result["machine"]["cpu"]["model"]
    lines = [
        f"# perf_analyzer against the v2 REST front: {result['name']}",
        "",
        f"{result['created']}, `{result['command']}`, {result['perf_analyzer']}, "
        f"{result['model']['arch']} ({result['model']['weights']}), one web photo "
        f"({result['photo']}), CPU: {cpu}, {result['machine']['cpus_available']} CPUs "
        "available; perf_analyzer runs on the same machine. Server columns come from the "
        "statistics extension (averages per inference).",
        "",
        "| input | clients | infer/s | p50 ms | p99 ms | server queue ms | server compute "
        "input ms | server compute infer ms | stable |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in result["steps"]:
        lines.append(
            f"| {s['input']} | {s['concurrency']} | {s['throughput']:.2f} "
            f"| {s['p50_us'] / 1e3:.1f} | {s['p99_us'] / 1e3:.1f} "
            f"| {s['server_queue_us'] / 1e3:.1f} | {s['server_compute_input_us'] / 1e3:.1f} "
            f"| {s['server_compute_infer_us'] / 1e3:.1f} | {'yes' if s['stable'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.perf_analyzer", description=__doc__)
    parser.add_argument("--name", default="perf_analyzer")
    parser.add_argument("--arch", default="densenet121")
    parser.add_argument("--concurrencies", default="1,16")
    parser.add_argument("--window-ms", type=int, default=5000)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    args.concurrencies = [int(c) for c in args.concurrencies.split(",")]
    try:
        result = run(args)
    except Failed as exc:
        raise SystemExit(str(exc)) from None
    (args.results_dir / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    (args.results_dir / f"{args.name}.md").write_text(text)
    print(text)
