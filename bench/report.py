"""Write a run's results: ``<name>.json``, ``<name>.md`` (tables) and ``<name>.png`` (plot)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.cpu import NOISY_CORES, is_noisy
from bench.targets import check

STEP_HEADER = (
    "| mode | images | concurrency | img/s | p50 ms | p95 ms | p99 ms | status counts "
    "| mean batch | queue wait ms | peak RSS MB | server CPU | server CPU ms/img "
    "| load generator CPU | other CPU |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _step_row(mode: str, step: dict[str, Any]) -> str:
    lat = step["latency_ms"]
    m = step["metrics"]
    statuses = ", ".join(f"{k}: {v}" for k, v in step["status_counts"].items())
    return (
        f"| {mode} | {step['images']} | {step['concurrency']} | {step['throughput']:.1f} "
        f"| {_num(lat['p50'], 0)} | {_num(lat['p95'], 0)} | {_num(lat['p99'], 0)} "
        f"| {statuses} | {_num(m.get('mean_batch_size'), 2)} "
        f"| {_num(m.get('mean_queue_wait_ms'))} | {_num(step['peak_rss_mb'], 0)} "
        f"| {_num(step.get('server_cpu_cores'), 2)} | {_num(step.get('server_cpu_ms_per_image'))} "
        f"| {_num(step.get('loadgen_cpu_cores'), 2)} "
        f"| {_num(step.get('other_cpu_cores'), 2)}{' (noisy)' if is_noisy(step) else ''} |"
    )


def _overload_lines(step: dict[str, Any]) -> list[str]:
    acc, rej, rec = step["accepted_latency_ms"], step["rejected_latency_ms"], step["recovery"]
    return [
        f"Open loop at {step['rate']:.1f} req/s (achieved {step.get('achieved_rate', 0):.1f}) "
        f"for {step['duration_s']:.0f} s "
        f"({step['requests']} requests, {step['images']} photos): status counts "
        f"{step['status_counts']}, {step['throughput']:.1f} img/s accepted.",
        f"Accepted p50/p99 {_num(acc['p50'], 0)}/{_num(acc['p99'], 0)} ms; "
        f"503 p50/p99 {_num(rej['p50'], 1)}/{_num(rej['p99'], 1)} ms; "
        f"latency back under {rec['threshold_ms']:.0f} ms (2x the c=1 p50) after "
        f"{_num(rec['recovered_after_s'], 2)} s; server alive afterwards: {step['server_alive']}.",
    ]


def _probe_line(modes: dict[str, Any]) -> str:
    """Same photo through every mode: top-1 class and the largest top-5 probability gap."""
    first = next(iter(modes.values()))["probe"]
    reference = {p["class_index"]: p["probability"] for p in first["top5"]}
    parts = []
    for name, mode in modes.items():
        top5 = mode["probe"]["top5"]
        gaps = [
            abs(p["probability"] - reference[p["class_index"]])
            for p in top5
            if p["class_index"] in reference
        ]
        largest = max(gaps, default=float("nan"))
        parts.append(f"{name} top-1 {top5[0]['class_index']} (max |dp| {largest:.1e})")
    return f"Same-model check on {first['photo']}: " + "; ".join(parts) + "."


def _precision_row(result: dict[str, Any], precision: str, engine: dict[str, Any]) -> str:
    mode = f"service {precision}"
    steps = {s["concurrency"]: s for s in result["modes"].get(mode, {}).get("steps", [])}
    c16 = steps.get(16) or {}
    service = [f"{_num(steps[c]['throughput'])}" if c in steps else "-" for c in (1, 16, 64)]
    ratio = c16["throughput"] / engine["throughput"] if c16 else None
    cpu = c16.get("server_cpu_ms_per_image")
    cpu_ratio = cpu / engine["cpu_ms_per_image"] if cpu and engine.get("cpu_ms_per_image") else None
    noisy = " (noisy)" if is_noisy(c16) or is_noisy(engine) else ""
    return (
        f"| {precision} | {engine.get('runtime', '-')} | {_num(engine['throughput'])} "
        f"(batch {engine['best_batch_size']}) | {_num(engine.get('cpu_ms_per_image'))} "
        f"| {' / '.join(service)} | {_num(ratio, 2)} | {_num(cpu)} | {_num(cpu_ratio, 2)}{noisy} |"
    )


def _precision_lines(result: dict[str, Any]) -> list[str]:
    """fp32 and bf16 (or any precisions) side by side, when the run compared them."""
    engines = result.get("engines") or {}
    if len(engines) < 2:
        return []
    lines = [
        "",
        "## Precisions side by side",
        "",
        "Engine: best img/s over the batch sizes (mean of the readings before and after the "
        "HTTP steps) and the engine process's CPU time per image at that batch. Service: web "
        "photos at 1 / 16 / 64 clients; server CPU per image is the server process's CPU "
        "time (/proc) over the images it answered at 16 clients.",
        "",
        "| precision | runtime | engine img/s | engine CPU ms/img | service img/s at 1 / 16 / 64 "
        "| service 16 / engine | server CPU ms/img at 16 | server CPU / engine CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [_precision_row(result, p, engine) for p, engine in engines.items()]
    return lines + _against_first(result, engines)


def _against_first(result: dict[str, Any], engines: dict[str, Any]) -> list[str]:
    """Each precision's engine and 16-client service throughput over the first one's."""
    first, *others = engines
    base = _c16(result, first)
    lines = [""]
    for precision in others:
        service = _c16(result, precision)
        ratio = service / base if service and base else None
        lines.append(
            f"- {precision} against {first}: engine "
            f"{_num(engines[precision]['throughput'] / engines[first]['throughput'], 2)}x, "
            f"service at 16 clients {_num(ratio, 2)}x."
        )
    return lines


def _c16(result: dict[str, Any], precision: str) -> float | None:
    steps = result["modes"].get(f"service {precision}", {}).get("steps", [])
    return next((s["throughput"] for s in steps if s["concurrency"] == 16), None)


def markdown(result: dict[str, Any]) -> str:
    machine, engine = result["machine"], result["engine"]
    lines = [
        f"# Benchmark `{result['name']}` ({result['created']})",
        "",
        f"Machine: {machine['cpu']['model']} ({', '.join(machine['cpu']['flags'])}), "
        f"{machine['cpus_available']} CPUs available, {machine['memory_gib']} GiB; "
        f"{machine['os']}; Python {machine['python']}; "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
        + ".",
        f"Model: {result['model']['arch']}, {result['model']['weights']}. "
        f"Threads: {result['plan']['threads']} intra-op (service, engine, baseline). "
        f"Command: `{result['command']}`; took {result['duration_s'] / 60:.1f} min.",
        "",
        f"## Engine-only ceiling ({engine.get('runtime', 'onnxruntime')} "
        f"{engine.get('precision', 'fp32')}, the service's engine on pre-made tensors)",
        "",
        "| batch | img/s | p50 ms per batch |",
        "|---|---|---|",
    ]
    lines += [
        f"| {b['batch_size']} | {b['throughput']:.1f} | {b['latency_ms']['p50']:.1f} |"
        for b in engine["batch_sizes"]
    ]
    lines += ["", f"Other processes used {_num(engine.get('other_cpu_cores'), 2)} cores meanwhile."]
    if "throughput_after" in engine:
        lines += [
            "",
            f"Measured before the HTTP steps: {_num(engine['throughput_before'], 1)} img/s, "
            f"after them: {_num(engine['throughput_after'], 1)} img/s; the targets use the "
            f"mean, {_num(engine['throughput'], 1)} img/s.",
        ]
    lines += _precision_lines(result)
    lines += [
        "",
        "## Over HTTP (closed loop)",
        "",
        "CPU columns are average cores busy during the step. (noisy): other processes used "
        f"more than {NOISY_CORES} cores, so that step understates what the machine can do.",
        "",
        STEP_HEADER,
    ]
    for name, mode in result["modes"].items():
        lines += [_step_row(name, s) for s in mode["steps"] if not s["overload"]]
    lines += ["", _probe_line(result["modes"])]
    lines += [
        "",
        "Cold start (spawn -> ready): "
        + ", ".join(
            f"{name} {mode['cold_start_s']:.2f} s" for name, mode in result["modes"].items()
        )
        + ".",
    ]
    for name, mode in result["modes"].items():
        for step in mode["steps"]:
            if step["overload"]:
                lines += ["", f"## Overload ({name})", "", *_overload_lines(step)]
    lines += [
        "",
        "## Targets",
        "",
        "| # | what | value | limit | met |",
        "|---|---|---|---|---|",
    ]
    for t in result["targets"]:
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        met += " (noisy)" if t.get("noisy") else ""
        lines.append(
            f"| {t['target']} | {t['description']} | {_num(t['value'], 2)} {t['unit']} "
            f"| {t['direction']} {t['limit']:g} {t['unit']} | {met} |"
        )
    photos = result["photos"]
    lines += [
        "",
        "Photos: "
        + "; ".join(photos["sources"].values())
        + f". Web: {', '.join(photos['web']['dimensions'])}, mean "
        f"{photos['web']['mean_kib']} KiB; phone: {', '.join(photos['phone']['dimensions'])}, "
        f"mean {photos['phone']['mean_kib']} KiB (JPEG quality {photos['jpeg_quality']}; "
        f"upscaled with Lanczos plus Gaussian grain sigma {photos['grain_sigma_when_upscaled']}).",
        "",
    ]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """Throughput and p99 against concurrency, one line per mode, web-size photos."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, mode in result["modes"].items():
        for images, style in (("web", "o-"), ("phone", "s--")):
            steps = [s for s in mode["steps"] if s["images"] == images and not s["overload"]]
            if not steps:
                continue
            x = [s["concurrency"] for s in steps]
            label = f"{name} ({images})"
            left.plot(x, [s["throughput"] for s in steps], style, label=label)
            right.plot(
                x, [s["latency_ms"]["p99"] or float("nan") for s in steps], style, label=label
            )
    ticks = sorted({s["concurrency"] for m in result["modes"].values() for s in m["steps"]} - {0})
    engines = result.get("engines") or {"": result["engine"]}
    for (precision, engine), color in zip(
        engines.items(), ("gray", "black", "brown"), strict=False
    ):
        left.axhline(
            engine["throughput"],
            color=color,
            linestyle=":",
            label=f"engine ceiling {precision} (batch {engine['best_batch_size']})".replace(
                "  ", " "
            ),
        )
    for axis, ylabel in ((left, "images / s"), (right, "p99 latency (ms)")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(ticks, [str(t) for t in ticks])
        axis.set_xlabel("concurrent clients")
        axis.set_ylabel(ylabel)
        axis.grid(True, alpha=0.3)
    right.set_yscale("log")
    left.set_ylim(bottom=0)
    left.legend(fontsize=7)
    fig.suptitle(
        f"{result['model']['arch']} on {result['machine']['cpus_available']} CPUs "
        f"({result['name']})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(result: dict[str, Any], results_dir: Path) -> list[Path]:
    """Add the target checks, then write JSON, Markdown and PNG; returns their paths."""
    result["targets"] = check(result)
    results_dir.mkdir(parents=True, exist_ok=True)
    base = results_dir / result["name"]
    paths = [base.with_suffix(".json"), base.with_suffix(".md"), base.with_suffix(".png")]
    paths[0].write_text(json.dumps(result, indent=2) + "\n")
    paths[1].write_text(markdown(result))
    plot(result, paths[2])
    return paths
