"""Replicas behind HAProxy under load: rolling restart, a SIGKILL, scale-up from 1 to N.

    python -m model_export export --arch densenet-tiny --weights random --seed 0 \\
        -o models/densenet-tiny-random.onnx
    python -m bench.replicas --window 1000      # --model: that file by default

The tiny DenseNet keeps each request short, so what the figures show is the balancer and
the drain, not a deadline overrun: densenet121 on this 2-CPU machine runs ~7 images/s in
all, and 16 clients then wait past DENSENET_REQUEST_TIMEOUT_S (504) whatever happens.

Starts N `python -m app` processes on loopback ports behind HAProxy (docker/haproxy/
haproxy.cfg; Debian's package), 16 closed-loop clients mixing /classify and
/classify/batch, then in turn:

- rolling restart: each replica is taken out of rotation (as Kubernetes removes a
  terminating pod from the endpoints), gets SIGTERM, drains, exits; a new one starts on
  the same port and is put back once ready;
- SIGKILL: one replica dies with requests in flight; what fails, and how long HAProxy
  takes to mark it down;
- scale-up: the fleet is shrunk to one replica, then grown back to N under load.

Windows are counted in answered requests, not seconds, so a busy machine only slows the
run. tests/test_replicas.py runs the same scenarios, shorter.
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.photos import make_photos
from bench.replicas_fleet import Fleet, Slot, cpu_model, cpus, replica_settings
from bench.replicas_load import Load, Outcome, failures, throughput
from tests.server import wait_until

CHECK_INTERVAL_S = 1.0  # `inter` in docker/haproxy/haproxy.cfg
CHECK_FALL = 1  # `fall`
CHECK_TIMEOUT_S = 2.0  # `timeout check`
# The preStop pause: requests HAProxy forwarded just before the replica left rotation
# reach the service before SIGTERM, so they are admitted and answered, not refused.
PRE_STOP_S = 1.0
DEFAULT_MODEL = Path("models/densenet-tiny-random.onnx")  # the tiny DenseNet: see above


@dataclass
class Timeline:
    """What the scenarios did and when (time.monotonic()), for the report and the plot."""

    events: list[tuple[float, str]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def mark(self, text: str) -> float:
        now = time.monotonic()
        self.events.append((now, text))
        return now


def put_back(fleet: Fleet, slot: Slot, timeline: Timeline) -> None:
    """Start a replica in the slot, wait until it is ready, then back into rotation."""
    fleet.start_replica(slot)
    put_back_started(fleet, slot, timeline)


def take_out(fleet: Fleet, slot: Slot, timeline: Timeline, pre_stop_s: float) -> int:
    """Out of rotation, the preStop pause, SIGTERM, wait for the exit; the exit code."""
    fleet.set_state(slot, "maint")
    timeline.mark(f"{slot.name} out of rotation")
    if pre_stop_s:
        time.sleep(pre_stop_s)  # the preStop pause itself, not a wait for a condition
    timeline.mark(f"{slot.name} SIGTERM")
    return fleet.stop_replica(slot, signal.SIGTERM)


def rolling_restart(fleet: Fleet, timeline: Timeline, pre_stop_s: float = PRE_STOP_S) -> None:
    """Each replica in turn: out, SIGTERM, exit, a new one, ready, back in."""
    began = timeline.mark("rolling restart begins")
    for slot in fleet.slots:
        code = take_out(fleet, slot, timeline, pre_stop_s)
        assert code == 0, f"{slot.name} exited {code} after SIGTERM"
        put_back(fleet, slot, timeline)
    ended = timeline.mark("rolling restart done")
    timeline.figures["rolling_restart"] = {"began": began, "ended": ended}


def sigkill(fleet: Fleet, load: Load, timeline: Timeline, after_requests: int) -> None:
    """Kill one replica under load; how long until HAProxy marks it down, what failed."""
    slot = fleet.slots[0]
    sent_before = int(fleet.stats()[slot.name]["stot"])
    killed = timeline.mark(f"{slot.name} SIGKILL")
    fleet.stop_replica(slot, signal.SIGKILL)
    down_after_s = fleet.wait_status(slot, lambda status: status.startswith("DOWN"), 30)
    down = timeline.mark(f"{slot.name} marked down")
    sent_at_down = int(fleet.stats()[slot.name]["stot"])
    # Keep the load going with the slot empty, then see whether anything more went there.
    wait_until(lambda: load.completed_since(down) >= after_requests, 120, "load after the kill")
    row = fleet.stats()[slot.name]
    timeline.figures["sigkill"] = {
        "killed": killed,
        "down": down,
        "down_after_s": (down - killed),
        "poll_s": down_after_s,
        "sessions_before_kill": sent_before,
        "sessions_at_down": int(sent_at_down),
        "sessions_after": int(row["stot"]),
        "retries": int(row["wretr"] or 0),
        "redispatches": int(row["wredis"] or 0),
    }
    put_back(fleet, slot, timeline)


def scale_up(fleet: Fleet, load: Load, timeline: Timeline, window_requests: int) -> None:
    """Shrink to one replica (zero errors), measure; grow back to all, measure again."""
    _first, *others = fleet.slots
    for slot in others:
        take_out(fleet, slot, timeline, PRE_STOP_S)
    one = timeline.mark("1 replica")
    wait_until(lambda: load.completed_since(one) >= window_requests, 300, "1-replica window")
    grow = timeline.mark(f"scale-up to {len(fleet.slots)} begins")
    for slot in others:
        fleet.start_replica(slot)
    for slot in others:
        put_back_started(fleet, slot, timeline)
    many = timeline.mark(f"{len(fleet.slots)} replicas")
    wait_until(lambda: load.completed_since(many) >= window_requests, 300, "N-replica window")
    end = timeline.mark("scale-up measured")
    timeline.figures["scale_up"] = {"one": (one, grow), "many": (many, end), "grow": grow}


def put_back_started(fleet: Fleet, slot: Slot, timeline: Timeline) -> None:
    """put_back() for a replica whose process was already started."""
    fleet.wait_replica_ready(slot)
    timeline.mark(f"{slot.name} ready")
    fleet.set_state(slot, "ready")
    fleet.wait_status(slot, lambda status: status.startswith("UP"), 30)


def summarize(outcomes: list[Outcome], timeline: Timeline) -> dict[str, Any]:
    """The figures the report and the closing note quote."""
    figures = timeline.figures
    summary: dict[str, Any] = {"requests": len(outcomes), "failed": len(failures(outcomes))}
    if "rolling_restart" in figures:
        began, ended = figures["rolling_restart"]["began"], figures["rolling_restart"]["ended"]
        during = [o for o in outcomes if o.started < ended and o.ended >= began]
        summary["rolling_restart"] = {
            "seconds": round(ended - began, 1),
            "requests": len(during),
            "non_200": len(failures(during)),
        }
    if "sigkill" in figures:
        kill = figures["sigkill"]
        # In flight on any replica at the kill; the killed replica's are the connection errors.
        failed = [o for o in failures(outcomes) if o.started <= kill["killed"] <= o.ended]
        summary["sigkill"] = {
            **{k: v for k, v in kill.items() if k not in ("killed", "down")},
            "failed": len(failed),
            "failed_statuses": sorted({o.status for o in failed}),
            # Sent in the second before the check noticed: HAProxy may still reuse a kept-alive
            # connection to the dead replica, and a POST on it is not retried.
            "failed_started_after_kill": sum(
                1 for o in failures(outcomes) if kill["killed"] < o.started < kill["down"]
            ),
            "failed_started_after_down": sum(
                1 for o in failures(outcomes) if o.started >= kill["down"]
            ),
        }
    if "scale_up" in figures:
        (a, b), (c, d) = figures["scale_up"]["one"], figures["scale_up"]["many"]
        one, many = throughput(outcomes, a, b), throughput(outcomes, c, d)
        summary["scale_up"] = {
            "images_per_s_1": round(one, 1),
            "images_per_s_n": round(many, 1),
            "ratio": round(many / one, 2) if one else None,
        }
    return summary


def run(args: argparse.Namespace) -> None:
    from bench.replicas_report import write_report

    images = [photo.jpeg for photo in make_photos("web", limit=6)]
    settings = replica_settings(args.threads)
    with tempfile.TemporaryDirectory() as workdir:
        fleet = Fleet(Path(args.model), args.replicas, Path(workdir), **settings)
        try:
            for slot in fleet.slots:
                fleet.start_replica(slot)
            for slot in fleet.slots:
                fleet.wait_replica_ready(slot)
            fleet.start_balancer()
            fleet.balancer_ready()
            timeline = Timeline()
            load = Load(fleet.url, images, clients=args.clients).start()
            timeline.mark("load begins")
            wait_until(lambda: load.completed_since(0) >= args.window, 300, "warm-up")
            rolling_restart(fleet, timeline, args.pre_stop_s)
            # A window of steady load between scenarios, so that no request overlaps two.
            settled = time.monotonic()
            wait_until(lambda: load.completed_since(settled) >= args.window, 300, "settle")
            sigkill(fleet, load, timeline, args.window)
            scale_up(fleet, load, timeline, args.window)
            outcomes = load.stop()
            timeline.mark("load ends")
        finally:
            fleet.close()
    summary = summarize(outcomes, timeline)
    print(summary)
    write_report(Path(args.out), args, summary, outcomes, timeline, cpu_model(), cpus())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__)
    parser.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_MODEL,
        help=f"ONNX model every replica serves (default: {DEFAULT_MODEL})",
    )
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per replica")
    parser.add_argument("--window", type=int, default=300, help="requests per measurement")
    parser.add_argument("--pre-stop-s", type=float, default=PRE_STOP_S)
    parser.add_argument("--out", default="bench/results/replicas.md")
    args = parser.parse_args(argv)
    if not args.model.is_file():
        parser.error(
            f"no model at {args.model}; export the tiny one with: python -m model_export export "
            f"--arch densenet-tiny --weights random --seed 0 -o {DEFAULT_MODEL}"
        )
    run(args)


if __name__ == "__main__":
    main()
