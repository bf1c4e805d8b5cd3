"""HTTP and gRPC checks of a running classifier container, for scripts/container-test.sh.

Each subcommand checks one thing the docs promise, waits on a condition with a
deadline (never a fixed sleep), prints what it saw and exits non-zero on failure:

  ready URL DEADLINE_S              GET /health/ready answers 200 in time
  classify URL IMAGE                POST /classify answers 200 with predictions and the
                                    random-weights warning (the CI image has random weights)
  drain URL IMAGE N GRACE_S -- CMD  N uploads held in the queue, then CMD (podman stop)
                                    while they are in flight: N answers 200, CMD exits 0
                                    within GRACE_S
  target PROM_URL JOB DEADLINE_S    Prometheus reports the JOB target with variant=cpu up
  grpc-ready HOST:PORT DEADLINE_S   grpc.health.v1 Check (service "") answers SERVING in
                                    time, as a Kubernetes `grpc:` probe asks it
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx

POLL_S = 0.1
# grpc.health.v1 in protobuf's wire form, so that no generated code is needed here:
# HealthCheckRequest{service: ""} is empty; HealthCheckResponse{status: SERVING (1)} is
# field 1 as a varint.
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVING = b"\x08\x01"
RANDOM_WEIGHTS_WORDS = "random, untrained weights"


def wait_for(what: str, deadline_s: float, condition: Callable[[], bool]) -> float:
    """Poll `condition` until it holds; return the seconds it took, or fail at the deadline."""
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        try:
            if condition():
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(POLL_S)
    raise SystemExit(f"FAIL: {what} not within {deadline_s:g} s")


def ready(url: str, deadline_s: float) -> None:
    took = wait_for(
        f"{url}/health/ready == 200",
        deadline_s,
        lambda: httpx.get(f"{url}/health/ready", timeout=2).status_code == 200,
    )
    print(f"ok: ready after {took:.1f} s")


def classify(url: str, image: Path) -> None:
    response = httpx.post(
        f"{url}/classify", files={"file": (image.name, image.read_bytes())}, timeout=30
    )
    if response.status_code != 200:
        raise SystemExit(f"FAIL: /classify {response.status_code}: {response.text[:300]}")
    body = response.json()
    top = body["predictions"][0]
    print(f"ok: /classify {image.name}: {top['label']} {top['probability']:.3f}")
    if not any(RANDOM_WEIGHTS_WORDS in warning for warning in body["warnings"]):
        raise SystemExit(f"FAIL: no random-weights warning in {body['warnings']}")
    print("ok: the answer carries the random-weights warning")


def queue_depth(url: str) -> float:
    """Images waiting, summed over the served models (the gauge has a series per model)."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in httpx.get(f"{url}/metrics", timeout=2).text.splitlines()
        if line.startswith(("classifier_queue_depth ", "classifier_queue_depth{"))
    )


def drain(url: str, image: Path, count: int, grace_s: float, stop: list[str]) -> None:
    """`stop` runs once all `count` uploads wait in the queue (the container is started
    with a long batch delay, so they stay there until SIGTERM makes the batcher run)."""
    photo = image.read_bytes()
    statuses: list[int] = []

    def send() -> None:
        try:
            reply = httpx.post(f"{url}/classify", files={"file": photo}, timeout=grace_s + 30)
            statuses.append(reply.status_code)
        except httpx.HTTPError as exc:
            print(f"request failed: {exc!r}", file=sys.stderr)
            statuses.append(0)

    senders = [threading.Thread(target=send) for _ in range(count)]
    for sender in senders:
        sender.start()
    wait_for(f"{count} requests queued", 30, lambda: queue_depth(url) >= count)
    if statuses:
        raise SystemExit(f"FAIL: {len(statuses)} answers came before the stop: {statuses}")
    started = time.monotonic()
    # S603: argv given by the calling script.
    stopped = subprocess.run(stop, check=False, stdout=subprocess.DEVNULL)  # noqa: S603
    took = time.monotonic() - started
    for sender in senders:
        sender.join(timeout=grace_s + 30)
    print(f"stop: exit {stopped.returncode} after {took:.1f} s; answers {sorted(statuses)}")
    if statuses != [200] * count:
        raise SystemExit(f"FAIL: expected {count} answers 200, got {statuses}")
    if stopped.returncode != 0 or took >= grace_s:
        raise SystemExit(f"FAIL: stop took {took:.1f} s (grace {grace_s:g} s) or failed")
    print(f"ok: {count} requests in flight at the stop all answered 200")


def target(prometheus: str, job: str, deadline_s: float) -> None:
    seen: set[str] = set()

    def up() -> bool:
        data = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()["data"]
        for found in data["activeTargets"]:
            labels = found["labels"]
            if labels.get("job") == job and labels.get("variant") == "cpu":
                state = f"target {found['scrapeUrl']}: {found['health']} {found['lastError']}"
                if state not in seen:
                    print(state.rstrip())
                    seen.add(state)
                return bool(found["health"] == "up")
        return False

    took = wait_for(f"Prometheus target {job} (cpu) up", deadline_s, up)
    print(f"ok: Prometheus scrapes the classifier ({took:.1f} s)")


def grpc_ready(address: str, deadline_s: float) -> None:
    with grpc.insecure_channel(address) as channel:
        # No serializers: the request goes as these bytes, the answer comes back as bytes.
        check: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(HEALTH_CHECK)
        answers: list[object] = []

        def serving() -> bool:
            answer: bytes | grpc.StatusCode
            try:
                answer = check(b"", timeout=2)
            except grpc.RpcError as exc:
                answer = exc.code()
            if answer not in answers:
                print(f"{HEALTH_CHECK} at {address}: {answer!r}")
                answers.append(answer)
            return answer == SERVING

        took = wait_for(f"gRPC health at {address} SERVING", deadline_s, serving)
    print(f"ok: gRPC health SERVING after {took:.1f} s")


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "ready":
        ready(args[0], float(args[1]))
    elif command == "classify":
        classify(args[0], Path(args[1]))
    elif command == "drain":
        separator = args.index("--")
        url, image, count, grace_s = args[:separator]
        drain(url, Path(image), int(count), float(grace_s), args[separator + 1 :])
    elif command == "target":
        target(args[0], args[1], float(args[2]))
    elif command == "grpc-ready":
        grpc_ready(args[0], float(args[1]))
    else:
        raise SystemExit(f"unknown check {command!r}; see the docstring")


if __name__ == "__main__":
    main(sys.argv[1:])
