"""bench/results/replicas.md and its plot: throughput and errors over time, events marked."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from bench.replicas_load import Outcome

BIN_S = 1.0
MARKED = ("SIGTERM", "SIGKILL", "marked down", "1 replica", "replicas", "scale-up")


def plot(path: Path, outcomes: list[Outcome], events: list[tuple[float, str]]) -> None:
    """Images/s and failed requests per second, with each SIGTERM, SIGKILL and scale step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    origin = min(o.started for o in outcomes)
    end = max(o.ended for o in outcomes)
    bins = int((end - origin) / BIN_S) + 1
    images, failed = [0.0] * bins, [0] * bins
    for o in outcomes:
        index = int((o.ended - origin) / BIN_S)
        if o.ok:
            images[index] += o.images / BIN_S
        else:
            failed[index] += 1
    times = [i * BIN_S for i in range(bins)]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True, height_ratios=[3, 1])
    top.plot(times, images, color="tab:blue", linewidth=1)
    top.set_ylabel("images/s classified (200)")
    bottom.bar(times, failed, width=BIN_S, color="tab:red")
    bottom.set_ylabel("failed requests")
    bottom.set_xlabel("seconds since the load began")
    for when, text in events:
        if any(word in text for word in MARKED):
            for axis in (top, bottom):
                color = "tab:red" if "SIGKILL" in text else "gray"
                axis.axvline(when - origin, color=color, linestyle=":", linewidth=0.8)
            top.annotate(
                text, (when - origin, top.get_ylim()[1]), rotation=90, fontsize=7,
                va="top", ha="right", color="dimgray",
            )  # fmt: skip
    top.set_title("Replicas behind HAProxy under 16 closed-loop clients")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(
    path: Path,
    args: argparse.Namespace,
    summary: dict[str, Any],
    outcomes: list[Outcome],
    timeline: Any,
    cpu: str,
    cpus: int,
) -> None:
    """The markdown results, a JSON copy of the figures, and the PNG beside them."""
    png = path.with_suffix(".png")
    plot(png, outcomes, timeline.events)
    path.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    origin = min(o.started for o in outcomes)
    statuses = Counter(o.status for o in outcomes)
    events = "\n".join(f"| {when - origin:.1f} | {text} |" for when, text in timeline.events)
    rolling, kill, scale = summary["rolling_restart"], summary["sigkill"], summary["scale_up"]
    command = (
        f"python -m bench.replicas --model {args.model} --replicas {args.replicas} "
        f"--clients {args.clients} --threads {args.threads} --window {args.window} "
        f"--pre-stop-s {args.pre_stop_s} --out {args.out}"
    )
    answered = ", ".join(f"{k}: {v}" for k, v in statuses.items())
    restart_steps = (
        f"{args.replicas} replicas in turn: out of rotation, {args.pre_stop_s} s preStop "
        "pause, SIGTERM, exit 0, new process, ready, back in"
    )
    kill_text = (
        f"**{kill['failed']} failed** ({', '.join(kill['failed_statuses']) or 'none'}), "
        f"{kill['failed_started_after_kill']} of them started after the kill; marked down "
        f"{kill['down_after_s']:.2f} s after the kill (check interval 1 s); "
        f"{kill['sessions_at_down'] - kill['sessions_before_kill']} connection attempts to "
        f"it meanwhile, redispatched to the others ({kill['redispatches']} redispatches); "
        f"{kill['sessions_after'] - kill['sessions_at_down']} sent to it once marked down"
    )
    rows = "\n".join(
        [
            f"| requests answered | {summary['requests']} ({answered}) |",
            f"| rolling restart ({restart_steps}) | **{rolling['non_200']} non-200** of "
            f"{rolling['requests']} requests over {rolling['seconds']} s |",
            f"| SIGKILL of one replica under load | {kill_text} |",
            f"| scale-up 1 -> {args.replicas} replicas | {scale['images_per_s_1']} -> "
            f"{scale['images_per_s_n']} images/s ({scale['ratio']}x) |",
        ]
    )
    path.write_text(
        f"""# Replicas behind HAProxy: rolling restart, SIGKILL, scale-up

Reproduce: `{command}` (a tiny model: `python -m model_export export --arch
densenet-tiny --weights random --seed 0 -o models/densenet-tiny-random.onnx`)

Machine: {cpu}, {cpus} CPUs, shared with other work while this ran (other jobs were
using the same two cores), so only the figures within this run compare. {args.replicas}
`python -m app` replicas ({args.threads} intra-op and preprocessing thread each, model
`{Path(args.model).name}`) on loopback ports behind HAProxy (Debian's package) running
docker/haproxy/haproxy.cfg; {args.clients} closed-loop clients, one request in four a
`/classify/batch` of 4 web-size JPEGs, the others one `/classify`.

![images/s and failed requests over time]({png.name})

| | result |
| --- | --- |
{rows}

Why the scale-up does not multiply by {args.replicas}: the replicas, HAProxy and the 16
clients share the machine's {cpus} cores. One replica alone can already keep them busy
(its event loop, its preprocessing thread and its inference thread run side by side, and
with a small model HTTP and JPEG decoding are most of the work), next to the load
generator and HAProxy; more replicas only share the same cores. The figure also moves
with the other work on the machine: an earlier run of this same command, while that work
was easing off (load average from 10 down to 6), measured 31.7 -> 85.4 images/s (2.7x).
On a cluster each replica brings its own cores.

The model is small on purpose: with densenet121 this machine classifies ~7 images/s in
all, so 16 closed-loop clients wait past `DENSENET_REQUEST_TIMEOUT_S` (10 s) and get
`504 timeout` even with no restart (an earlier densenet121 run: 63 of 1443 requests,
from its warm-up on), which hides what the balancer and the drain do.

## Events (seconds since the load began)

| t (s) | event |
| --- | --- |
{events}
"""
    )
