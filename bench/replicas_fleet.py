"""Replicas of the service behind HAProxy, on loopback: start, stop, kill, take out of rotation.

HAProxy runs docker/haproxy/haproxy.cfg, the file the compose `replicas` profile mounts,
with only its addresses changed: the server-template line (Docker's DNS) becomes one
`server` line per replica slot on a loopback port, the frontend binds a loopback port and
the runtime API socket lives in a temporary directory. Each slot keeps its port across
restarts, as a Kubernetes Service keeps its name while the pods behind it change.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.server import Server, free_port, start, wait_ready, wait_until

ROOT = Path(__file__).resolve().parent.parent
HAPROXY_CONFIG = ROOT / "docker" / "haproxy" / "haproxy.cfg"
BACKEND = "classifiers"


def haproxy_binary() -> str | None:
    """HAProxy on PATH, or in /usr/sbin where Debian puts it (often not on a user's PATH)."""
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")


def render_config(bind_port: int, socket_path: Path, replica_ports: list[int]) -> str:
    """docker/haproxy/haproxy.cfg with loopback addresses instead of Docker's."""
    lines, servers_added = [], False
    text = HAPROXY_CONFIG.read_text()
    text, _, _ = text.partition("\nresolvers docker")  # Docker's DNS: not needed here
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("stats socket "):
            line = line.replace(stripped.split()[2], str(socket_path))
        elif stripped == "bind :8000":
            line = line.replace(":8000", f"127.0.0.1:{bind_port}")
        elif stripped.startswith("log stdout"):
            continue  # the fleet does not read HAProxy's log
        elif stripped.startswith("server-template "):
            indent = line[: len(line) - len(line.lstrip())]
            lines += [
                f"{indent}server replica-{i + 1} 127.0.0.1:{port}"
                for i, port in enumerate(replica_ports)
            ]
            servers_added = True
            continue
        lines.append(line)
    assert servers_added, "no server-template line in docker/haproxy/haproxy.cfg"
    return "\n".join(lines) + "\n"


@dataclass
class Slot:
    """One replica position behind the balancer: a fixed port, the process serving it."""

    name: str
    port: int
    process: Server | None = None
    exits: list[int] = field(default_factory=list)  # exit codes of the processes it had


class Fleet:
    """HAProxy plus `slots` replica positions, each empty or holding a `python -m app`."""

    def __init__(self, model: Path, slots: int, workdir: Path, **settings: object) -> None:
        self.model, self.settings, self.workdir = model, settings, workdir
        self.slots = [Slot(f"replica-{i + 1}", free_port()) for i in range(slots)]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.socket_path = workdir / "haproxy.sock"
        self.haproxy: subprocess.Popen[bytes] | None = None

    # --- HAProxy ---------------------------------------------------------------------

    def start_balancer(self) -> None:
        binary = haproxy_binary()
        assert binary, "haproxy is not installed (Debian package haproxy)"
        config = self.workdir / "haproxy.cfg"
        config.write_text(render_config(self.port, self.socket_path, self.ports()))
        with (self.workdir / "haproxy.log").open("wb") as log:
            self.haproxy = subprocess.Popen(
                [binary, "-db", "-f", str(config)], stdout=log, stderr=log
            )
        wait_until(self.socket_path.exists, 10, "HAProxy's runtime API socket")

    def command(self, line: str) -> str:
        """One command on HAProxy's runtime API (the admin socket)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self) -> dict[str, dict[str, str]]:
        """`show stat` of the backend's servers: name -> the CSV columns (status, stot...)."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {
            row["svname"]: row
            for row in rows
            if row["pxname"] == BACKEND and row["svname"].startswith("replica-")
        }

    def set_state(self, slot: Slot, state: str) -> None:
        """`ready`, `drain` or `maint`; maint takes it out of rotation, as an endpoint removal."""
        answer = self.command(f"set server {BACKEND}/{slot.name} state {state}")
        assert not answer.strip(), answer

    def wait_status(self, slot: Slot, wanted: Callable[[str], bool], timeout_s: float) -> float:
        """Wait until HAProxy's status for the slot satisfies `wanted`; the time it took."""
        began = time.monotonic()
        wait_until(lambda: wanted(self.stats()[slot.name]["status"]), timeout_s, slot.name)
        return time.monotonic() - began

    # --- replicas --------------------------------------------------------------------

    def ports(self) -> list[int]:
        return [slot.port for slot in self.slots]

    def start_replica(self, slot: Slot) -> None:
        assert slot.process is None or slot.process.poll() is not None
        slot.process, _ = start(self.model, port=slot.port, **self.settings)

    def wait_replica_ready(self, slot: Slot, timeout_s: float = 120) -> None:
        assert slot.process is not None
        wait_ready(slot.process, f"http://127.0.0.1:{slot.port}", timeout_s)

    def stop_replica(self, slot: Slot, sig: int = signal.SIGTERM, timeout_s: float = 60) -> int:
        """Send `sig` and wait for the exit; its exit code."""
        assert slot.process is not None
        slot.process.send_signal(sig)
        code = slot.process.wait(timeout=timeout_s)
        slot.process.output()
        slot.exits.append(code)
        return code

    def balancer_ready(self, timeout_s: float = 30) -> None:
        """Wait until the balancer answers through at least one ready replica."""

        def answers() -> bool:
            try:
                return httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answers, timeout_s, "the balancer's first ready answer")

    def close(self) -> None:
        """Kill whatever is still running (replicas, then HAProxy) and reap it."""
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.kill()
                slot.process.wait(timeout=30)
        if self.haproxy is not None and self.haproxy.poll() is None:
            self.haproxy.terminate()
            try:
                self.haproxy.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.haproxy.kill()
                self.haproxy.wait(timeout=10)


def replica_settings(threads: int) -> dict[str, object]:
    """Each replica sized like a pod with a CPU limit of `threads` cores."""
    return {
        "intra_op_threads": threads,
        "preprocess_threads": threads,
        "warmup_runs": 1,
        "log_level": "warning",
    }


def cpu_model() -> str:
    """The CPU's model name, for the results."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def cpus() -> int:
    return len(os.sched_getaffinity(0))
