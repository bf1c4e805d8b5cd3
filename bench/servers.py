"""Start a server as its own process, time it to ready, watch its memory, stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A running server process: its URL, cold-start time and log file."""

    process: subprocess.Popen[bytes]
    url: str
    cold_start_s: float
    log_path: Path

    def reset_peak_rss(self) -> None:
        """Restart the kernel's peak-RSS counter (VmHWM) so the next read covers one step."""
        # Where this fails the peak covers the whole process life: still an upper bound.
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def peak_rss_mb(self) -> float | None:
        """Peak resident memory since start or the last reset, in MiB (Linux only)."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return None

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(
    args: list[str], env: dict[str, str], port: int, log_path: Path, ready_timeout_s: float
) -> Server:
    """Spawn ``python <args>`` and wait until GET /health/ready answers 200.

    The cold start runs from just before the spawn to the first ready answer, so it holds
    interpreter start, imports, model load and warm-up.
    """
    url = f"http://127.0.0.1:{port}"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("wb")
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, *args],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = started + ready_timeout_s
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{_tail(log_path)}")
            try:
                if client.get(f"{url}/health/ready").status_code == 200:
                    return Server(process, url, time.monotonic() - started, log_path)
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
    process.kill()
    process.wait()
    raise RuntimeError(f"server not ready in {ready_timeout_s} s:\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
