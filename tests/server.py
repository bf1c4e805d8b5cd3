"""Start `python -m app` as a real process on a free loopback port, as tests need it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


class Server(subprocess.Popen[str]):
    """A `python -m app` process whose combined output is collected as it comes."""

    def __init__(self, args: list[str], env: dict[str, str], **kwargs: object) -> None:
        super().__init__(
            args,
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            **kwargs,  # type: ignore[arg-type]
        )
        self.lines: list[str] = []
        port = env.get("DENSENET_GRPC_PORT", "0")
        self.grpc_address = f"127.0.0.1:{port}" if port != "0" else None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.stdout is not None
        with self.stdout:
            for line in self.stdout:
                self.lines.append(line)

    def output(self, timeout_s: float = 30) -> str:
        """Everything printed so far; after exit, everything printed."""
        if self.poll() is not None:
            self._reader.join(timeout=timeout_s)
        return "".join(self.lines)


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (each held until all are chosen)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
        return ports


APP = ["-m", "app"]


def start(
    model: Path | None,
    preexec_fn: Callable[[], None] | None = None,
    python_args: list[str] = APP,
    **settings: object,
) -> tuple[Server, str]:
    """`python -m app` serving `model` (None: the settings name a model repository);
    `python_args` replace `-m app` (a wrapper that runs the app's module in the end)."""
    port, grpc_port = free_ports(2)
    env = {
        **os.environ,
        "DENSENET_PORT": str(port),
        "DENSENET_GRPC_PORT": str(grpc_port),
        "DENSENET_HOST": "127.0.0.1",
        "DENSENET_INTRA_OP_THREADS": "1",
        "DENSENET_PREPROCESS_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DENSENET_MODEL_PATH", None)
    if model is not None:
        env["DENSENET_MODEL_PATH"] = str(model)
    env.update({f"DENSENET_{k.upper()}": str(v) for k, v in settings.items()})
    process = Server([sys.executable, *python_args], env, preexec_fn=preexec_fn)
    return process, f"http://127.0.0.1:{port}"


def _exit(model: Path | None, **settings: object) -> tuple[int | None, str]:
    """Exit status and output of `python -m app` expected to stop at start-up (a minute)."""
    process, _ = start(model, **settings)
    try:
        process.wait(timeout=60)
        output = process.output()
    finally:
        process.kill()
        process.wait()
    return process.returncode, output


def startup_failure(model: Path | None, **settings: object) -> str:
    """The output of `python -m app` that exits at start-up (asserted)."""
    code, output = _exit(model, **settings)
    assert code not in (0, None)
    return output


def startup_refusal(model: Path | None, **settings: object) -> str:
    """The one `cannot start:` line of a start-up that exits 1 without a traceback."""
    code, output = _exit(model, **settings)
    assert code == 1
    assert "Traceback" not in output
    refusals = [line for line in output.splitlines() if "cannot start: " in line]
    assert len(refusals) == 1, output
    return refusals[0]


def read_response(sock: socket.socket, timeout_s: float = 10) -> tuple[bytes, bool]:
    """Everything the server sends, and whether it then closed the connection."""
    sock.settimeout(timeout_s)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return data, False
    except ConnectionResetError:  # closed with the client's unread bytes still arriving
        return data, True
    return data, True


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory (VmRSS), or its peak since the last reset (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for process {pid}")


def wait_until(condition: Callable[[], object], timeout_s: float = 30, what: str = "") -> None:
    """Poll `condition` until true; fail (not hang) after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what or condition}"
        time.sleep(0.02)


def metric(url: str, series: str) -> float | None:
    """The value of one exposition line (name with labels, as printed), or None."""
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def wait_ready(process: Server, url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited {process.returncode}: {process.output()}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("server never became ready")


@contextmanager
def running(
    model: Path | None,
    preexec_fn: Callable[[], None] | None = None,
    python_args: list[str] = APP,
    **settings: object,
) -> Iterator[tuple[Server, str]]:
    process, url = start(model, preexec_fn, python_args, **settings)
    try:
        wait_ready(process, url)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        process.output()
