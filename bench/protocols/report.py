"""Medians over rounds, the three targets, and the markdown report of bench.protocols."""

from __future__ import annotations

import statistics
import subprocess
from pathlib import Path
from typing import Any

from bench.cpu import is_noisy

NUMBERS = (
    "throughput",
    "p50_ms",
    "p99_ms",
    "server_cpu_ms_per_image",
    "engine_cpu_ms_per_image",
    "front_cpu_ms_per_image",
    "mean_batch_size",
)
CPU_TEXT = """\
Server CPU per image: the server process's CPU time (utime + stime from /proc/PID/stat)
between just before the client starts and just after it ends, divided by the images the
server answered in that span (the delta of its own `classifier_images_classified_total`).
Engine CPU per image: over the same span, the CPU time of the threads that run ONNX
Runtime, read per thread from /proc/PID/task/TID/stat: the batcher's `inference` thread,
which calls the session, and the session's intra-op pool (native threads that Python does
not know and that keep the process's name; `py-spy dump` names the Python threads, and
gRPC's core threads name themselves: `event_engine`, `grpc_global_tim`, `lifeguard`).
Front CPU = server - engine: the event loop (HTTP or gRPC parsing, the data plane,
serializing the answer), gRPC's own threads, and for the `image` input the decoding and
preprocessing pool; `threads_cpu_ms_per_image` in the JSON splits it by thread. As a check
of that split, the engine alone (bench/engine_ceiling.py: the service's engine in its own
process, same thread count, pre-made tensors) runs at each mean batch size seen, after the
server has stopped. It runs batches back to back; in the server the engine also waits
between batches, and ONNX Runtime's intra-op threads spin while they wait (its default), so
the engine's threads in the server use more CPU per image than the engine alone: the more
idle time between batches, the more."""


def _median(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per configuration: the median of each number over the rounds."""
    configs = list(dict.fromkeys((r["protocol"], r["input"], r["clients"]) for r in rows))
    summary = []
    for protocol, kind, clients in configs:
        runs = [
            r
            for r in rows
            if (r["protocol"], r["input"], r["clients"]) == (protocol, kind, clients)
        ]
        entry: dict[str, Any] = {"protocol": protocol, "input": kind, "clients": clients}
        entry |= {key: _median([r.get(key) for r in runs]) for key in NUMBERS}
        entry["rounds"] = len(runs)
        entry["unstable"] = sum(r.get("stable") is False for r in runs)
        entry["noisy"] = sum(is_noisy(r) for r in runs)
        entry["errors"] = list(dict.fromkeys(r["error"] for r in runs if r.get("error")))
        summary.append(entry)
    return summary


def _clients(count: int) -> str:
    return f"{count} client" if count == 1 else f"{count} clients"


def _verdict(label: str, ratio: float | None, bound: float, at_least: bool) -> dict[str, Any]:
    if ratio is None:
        return {"target": label, "ratio": None, "bound": bound, "met": False}
    met = ratio >= bound if at_least else ratio <= bound
    missed_pct = 100 * abs(ratio - bound) / bound  # how far from the bound, as a share of it
    return {"target": label, "ratio": ratio, "bound": bound, "met": met, "missed_pct": missed_pct}


def targets(summary: list[dict[str, Any]], fp32: str, top: int) -> list[dict[str, Any]]:
    """(1) gRPC FP32 >= REST v2 FP32 infer/s at each concurrency; (2) gRPC image >= 0.95x
    /classify at the highest; (3) gRPC front CPU per image <= the REST v2 front's."""
    found = {(s["protocol"], s["input"], s["clients"]): s for s in summary}
    clients = sorted({s["clients"] for s in summary})
    checks = [  # label, number compared, ours, the reference, bound, at least (or at most)
        *[
            (
                f"(1) gRPC FP32 tensor >= REST v2 (binary) FP32 tensor infer/s, {_clients(c)}",
                "throughput", ("grpc", fp32, c), ("http-v2", fp32, c), 1.0, True,
            )
            for c in clients
        ],
        (
            f"(2) gRPC `image` >= 0.95x /classify infer/s, {_clients(top)}",
            "throughput", ("grpc", "image", top), ("classify", "image", top), 0.95, True,
        ),
        *[
            (
                f"(3) gRPC front CPU per image <= REST v2 front's, {kind}, {_clients(c)}",
                "front_cpu_ms_per_image", ("grpc", kind, c), ("http-v2", kind, c), 1.0, False,
            )
            for kind in (fp32, "image")
            for c in clients
        ],
    ]  # fmt: skip
    verdicts = []
    for label, key, ours, reference, bound, at_least in checks:
        a, b = found.get(ours, {}), found.get(reference, {})
        ratio = a[key] / b[key] if a.get(key) is not None and b.get(key) else None
        verdict = _verdict(label, ratio, bound, at_least)
        verdict["noisy"] = bool(a.get("noisy") or b.get("noisy"))
        verdicts.append(verdict)
    return verdicts


def progress(done: int, total: int, elapsed_s: float, row: dict[str, Any]) -> str:
    what = f"{row['protocol']} {row['input']} c={row['clients']} (round {row['round'] + 1})"
    if row.get("error"):
        return f"[{done}/{total} {elapsed_s:5.0f}s] {what}: FAILED {row['error']}"
    cpu = row["server_cpu_ms_per_image"] or 0.0
    return (
        f"[{done}/{total} {elapsed_s:5.0f}s] {what}: {row['throughput']:.1f} infer/s, "
        f"server CPU {cpu:.1f} ms/img, other processes {row['other_cpu_cores'] or 0:.2f} cores"
    )


def tool_version(tool: Path) -> str:
    """The binary's own words and the wheel it came from (the binary says 0.0.0)."""
    done = subprocess.run([str(tool), "--version"], capture_output=True, text=True)
    wheels = sorted(p.name for p in (tool.parent / "wheel").glob("*.whl"))
    said = (done.stdout + done.stderr).strip()
    return f"{said} (from {', '.join(wheels)})" if wheels else said


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _notes(s: dict[str, Any]) -> str:
    notes = [f"failed: {e}" for e in s["errors"]]
    if s["unstable"]:
        notes.append(f"{s['unstable']} of {s['rounds']} unstable")
    if s["noisy"]:
        notes.append(f"{s['noisy']} of {s['rounds']} noisy")
    return "; ".join(notes)


def _verdict_text(v: dict[str, Any]) -> str:
    if v["ratio"] is None:
        return f"- {v['target']}: not measured (a row failed), missed"
    outcome = "met" if v["met"] else f"missed by {v['missed_pct']:.0f}%"
    noisy = " (rests on a noisy row)" if v["noisy"] else ""
    return f"- {v['target']}: {v['ratio']:.2f}x, {outcome}{noisy}"


def markdown(result: dict[str, Any]) -> str:
    m, model, photo = result["machine"], result["model"], result["photo"]
    t = result["timing"]
    lines = [
        f"# Protocol fronts side by side: {result['name']}",
        "",
        f"{result['created']}, `{result['command']}`, model {model['name']} ({model['file']}: "
        f"{model['arch']}, weights {model['weights']}, {model['weights_source']}), one web "
        f"photo ({photo['file']}, {photo['bytes']} bytes), CPU: {m['cpu']['model']}, "
        f"{m['cpus_available']} CPUs available, {result['perf_analyzer']}; one server "
        f"process, the clients on the same machine. {result['rounds']} rounds, every other "
        "one in reverse order; medians shown. perf_analyzer: windows of "
        f"{t['window_ms']} ms until 3 in a row agree within {t['stability_pct']}% (at most "
        f"{t['max_trials']}); /classify: the load generator, {t['warmup_s']} s warm-up then "
        f"{t['duration_s']} s. A row is noisy when other processes used over 0.25 cores.",
        "",
        "## How each request is encoded (seen on the wire, bench/protocols/wire.py)",
        "",
        *[f"- {name}: {text}" for name, text in result["encodings"].items()],
        f"- classify image: POST /classify, Content-Type image/jpeg, the JPEG as the body "
        f"({photo['bytes']} bytes); the answer is JSON with the top 5 (bench/loadgen.py)",
        "",
        "## Results",
        "",
        "| protocol | input | clients | infer/s | p50 ms | p99 ms | server CPU ms/img "
        "| engine CPU ms/img | front CPU ms/img | mean batch | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in result["summary"]:
        lines.append(
            f"| {s['protocol']} | {s['input']} | {s['clients']} | {_number(s['throughput'], 2)} "
            f"| {_number(s['p50_ms'], 1)} | {_number(s['p99_ms'], 1)} "
            f"| {_number(s['server_cpu_ms_per_image'], 1)} "
            f"| {_number(s['engine_cpu_ms_per_image'], 1)} "
            f"| {_number(s['front_cpu_ms_per_image'], 1)} | {_number(s['mean_batch_size'], 2)} "
            f"| {_notes(s)} |"
        )
    lines += ["", "## How CPU per image is measured", "", CPU_TEXT, ""]
    for batch, alone in result["engine_alone_cpu_ms_per_image"].items():
        seen = [
            s["engine_cpu_ms_per_image"]
            for s in result["summary"]
            if s["mean_batch_size"] and max(1, round(s["mean_batch_size"])) == int(batch)
        ]
        inside = _median(seen)
        lines.append(
            f"- batch {batch}: engine alone {alone:.1f} ms/img; engine threads in the server "
            f"{_number(inside, 1)} ms/img (median of {len(seen)} row(s) with that mean batch)"
        )
    lines += ["", "## Targets", "", *[_verdict_text(v) for v in result["targets"]]]
    lines += ["", "Missed by X%: how far the ratio is from its bound, as a share of the bound."]
    return "\n".join(lines) + "\n"
