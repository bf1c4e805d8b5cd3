"""Where the server's CPU goes per image: CPU time of each of its threads under load.

``python -m bench.cpu_threads --model M.onnx --precision bf16 [--concurrency 16]``

Starts ``python -m app``, loads it with the closed-loop load generator on web photos, and
reads every thread's CPU time from ``/proc/PID/task`` at the edges of the window. Threads
are named from ``py-spy dump`` (the inference thread, the preprocessing pool, the event
loop); threads Python does not know are the runtime's own pool (ONNX Runtime's or
OpenVINO's intra-op threads). Engine = inference thread + runtime pool. Prints a table;
nothing is asserted or written. Linux only; needs py-spy (``pip install py-spy``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import servers
from bench.photos import write_photos

_TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of every thread of a process."""
    times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # the thread ended meanwhile
        times[int(task.name)] = (int(fields[11]) + int(fields[12])) / _TICK
    return times


def thread_names(pid: int) -> dict[int, str]:
    """OS thread id -> Python thread name (numbered pool threads folded into one name)."""
    beside = Path(sys.executable).with_name("py-spy")  # the virtualenv's, when not on PATH
    dump = subprocess.run(
        [str(beside) if beside.exists() else "py-spy", "dump", "--pid", str(pid), "--nonblocking"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.findall(r'Thread (\d+) \([^)]*\): "([^"]*)"', dump)
    return {int(tid): re.sub(r"_\d+$", "", name) for tid, name in found}


def measure(args: argparse.Namespace, photos: Path, log: Path) -> dict[str, object]:
    port = servers.free_port()
    env = {
        "DENSENET_MODEL_PATH": str(args.model),
        "DENSENET_PRECISION": args.precision,
        "DENSENET_PORT": str(port),
        "DENSENET_GRPC_PORT": "0",  # HTTP only: no second port to collide
        "DENSENET_LOG_LEVEL": "warning",
    }
    server = servers.start(["-m", "app"], env, port, log, 300.0)
    try:
        command = [sys.executable, "-m", "bench.loadgen", "closed", "--url", server.url]
        command += ["--images", str(photos), "--concurrency", str(args.concurrency)]
        command += ["--warmup", str(args.warmup), "--duration", str(args.duration)]
        load = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        time.sleep(args.warmup)
        names = thread_names(server.process.pid)
        before, started = thread_cpu_s(server.process.pid), time.monotonic()
        out, _ = load.communicate()
        after, wall = thread_cpu_s(server.process.pid), time.monotonic() - started
    finally:
        server.stop()
    result = json.loads(out)
    images = result["throughput"] * wall
    groups: dict[str, float] = {}
    for tid, cpu in after.items():
        name = names.get(tid, "runtime pool (native)")
        groups[name] = groups.get(name, 0.0) + cpu - before.get(tid, 0.0)
    return {"throughput": result["throughput"], "images": images, "wall_s": wall, "groups": groups}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_threads", description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--duration", type=float, default=20.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        photos = Path(scratch) / "web"
        write_photos(photos, "web", None)
        measured = measure(args, photos, Path(scratch) / "server.log")
    groups: dict[str, float] = measured["groups"]  # type: ignore[assignment]
    images: float = measured["images"]  # type: ignore[assignment]
    total = sum(groups.values())
    print(
        f"{args.precision}, {args.concurrency} clients: {measured['throughput']:.1f} img/s; "
        f"server CPU {1000 * total / images:.1f} ms per image"
    )
    for name, seconds in sorted(groups.items(), key=lambda kv: -kv[1]):
        share = 100 * seconds / total if total else 0.0
        print(f"  {name:24} {1000 * seconds / images:7.1f} ms/img {share:5.1f}%")


if __name__ == "__main__":
    main()
