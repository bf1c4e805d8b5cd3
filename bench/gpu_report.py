"""Write a GPU run's results (``python -m bench gpu``): NAME.json, NAME.md and NAME.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _engine_table(result: dict[str, Any]) -> list[str]:
    """img/s by batch size, one row per (precision, cuDNN algorithm search)."""
    found = result.get("engines", [])
    sizes = sorted({b["batch_size"] for e in found for b in e["batch_sizes"]})
    lines = [
        "| precision | cudnn_conv_algo_search | "
        + " | ".join(f"batch {s}" for s in sizes)
        + " | best | batch-1 p50 ms |",
        "|---|---|" + "---|" * len(sizes) + "---|---|",
    ]
    for engine in found:
        by_size = {b["batch_size"]: b["throughput"] for b in engine["batch_sizes"]}
        p50 = (engine.get("batch1_latency_ms") or {}).get("p50")
        best = engine.get("error") or (
            f"{_num(engine['throughput'], 0)} (batch {engine['best_batch_size']})"
        )
        lines.append(
            f"| {engine['precision']} | {engine['algo_search']} | "
            + " | ".join(_num(by_size.get(s), 0) for s in sizes)
            + f" | {best} | {_num(p50, 2)} |"
        )
    return lines


def _service_table(result: dict[str, Any]) -> list[str]:
    lines = [
        "| mode | photos | clients | img/s | p50 ms | p99 ms | mean batch | status counts "
        "| server CPU cores | server CPU ms/img | cold start s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, mode in result.get("modes", {}).items():
        if mode.get("error"):
            lines.append(f"| {name} | - | - | {mode['error']} |" + " - |" * 7)
        for step in mode["steps"]:
            lat = step["latency_ms"]
            statuses = ", ".join(f"{k}: {v}" for k, v in step["status_counts"].items())
            lines.append(
                f"| {name} | {step.get('images', 'web')} | {step['concurrency']} "
                f"| {_num(step['throughput'])} "
                f"| {_num(lat['p50'])} | {_num(lat['p99'])} "
                f"| {_num(step['metrics'].get('mean_batch_size'), 2)} | {statuses} "
                f"| {_num(step.get('server_cpu_cores'), 2)} "
                f"| {_num(step.get('server_cpu_ms_per_image'), 2)} "
                f"| {_num(mode['cold_start_s'], 1)} |"
            )
    return lines


def _agreement_table(result: dict[str, Any]) -> list[str]:
    lines = [
        "| candidate (reference: onnxruntime CPU fp32) | top-1 agreement "
        "| where the reference is >= 50% sure | top-5 overlap | max prob. diff | max logit diff |",
        "|---|---|---|---|---|---|",
    ]
    for name, a in result.get("agreement", {}).items():
        lines.append(
            f"| {name} | {100 * a['top1_agreement']:.2f}% ({a['inputs'] - a['top1_disagreements']}"
            f"/{a['inputs']}) | {100 * a['top1_agreement_confident']:.2f}% of "
            f"{a['confident_inputs']} | {100 * a['top5_overlap']:.2f}% "
            f"| {a['max_probability_diff']:.2g} | {a['max_logit_diff']:.3g} |"
        )
    return lines


def _variants_table(result: dict[str, Any]) -> list[str]:
    """Plain ONNX Runtime beside the engine: its defaults, TF32 off, CUDA graphs."""
    lines = ["| precision | setting | img/s by batch size | note |", "|---|---|---|---|"]
    for precision, found in result.get("variants", {}).items():
        for setting, run in found.items():
            if setting == "tf32_effect":
                continue
            sizes = ", ".join(
                f"{b['batch_size']}: {b['throughput']:.0f}" for b in run["batch_sizes"]
            )
            options = run.get("provider_options", {})
            note = run.get("error") or f"use_tf32={options.get('use_tf32', '?')}"
            lines.append(f"| {precision} | {setting} | {sizes or '-'} | {note} |")
        effect = found.get("tf32_effect")
        if effect:
            lines.append(
                f"| {precision} | TF32 on vs off | same top-1 {100 * effect['same_top1']:.1f}% "
                f"| max logit diff {effect['max_abs_logit_diff']:.3g} |"
            )
    return lines


def _best_web(mode: dict[str, Any], images: str = "web") -> float | None:
    found = [s["throughput"] for s in mode["steps"] if s.get("images", "web") == images]
    return max(found) if found else None


def _ceiling(result: dict[str, Any], precision: str, env: dict[str, str]) -> tuple[float, str]:
    """The engine's best img/s in PRECISION with the service's settings (its cuDNN search,
    batches up to its largest) where measured, else at any setting; and what it was."""
    algo = env.get("DENSENET_CUDNN_CONV_ALGO_SEARCH")
    largest = int(env.get("DENSENET_MAX_BATCH_SIZE", 0)) or None
    candidates = []
    for engine in result.get("engines", []):
        same = engine["algo_search"] == algo or algo is None
        for b in engine["batch_sizes"] if engine["precision"] == precision else []:
            fits = largest is None or b["batch_size"] <= largest
            candidates.append((same and fits, b["throughput"], engine["algo_search"], b))
    if not candidates:
        return 0.0, ""
    like_service = [c for c in candidates if c[0]] or candidates
    _, best, search, b = max(like_service, key=lambda c: c[1])
    return best, f"{search}, batch {b['batch_size']}"


def _targets(result: dict[str, Any]) -> list[str]:
    """The service against its GPU engine ceiling (target >= 0.8x) and the CPUs' decoding."""
    decode = {d["photos"]: d for d in result.get("decode", []) if "images_per_s" in d}
    lines = []
    for name, mode in result.get("modes", {}).items():
        precision = name.split()[-1]
        ceiling, where = _ceiling(result, precision, mode.get("env", {}))
        web, phone = _best_web(mode), _best_web(mode, "phone")
        if web and ceiling:
            verdict = "met" if web >= 0.8 * ceiling else "NOT met"
            lines.append(
                f"- {name}: web photos {web:.0f} img/s = {web / ceiling:.2f}x the engine "
                f"ceiling {ceiling:.0f} img/s ({where}; target >= 0.8x: {verdict})"
            )
        for size, best in (("web", web), ("phone", phone)):
            if best and size in decode:
                cap = decode[size]["images_per_s"]
                lines.append(
                    f"- {name}: {size} photos {best:.0f} img/s = {best / cap:.2f}x what "
                    f"{decode[size]['processes']} processes decode ({cap:.0f} img/s, "
                    f"{decode[size]['cpu_ms_per_image']:.1f} CPU ms/img)"
                )
    return lines


def _phase_seconds(result: dict[str, Any]) -> str:
    """Where the time went, phase by phase (docs/gpu.md's budget is only an estimate)."""
    timed = [(n, p["seconds"]) for n, p in result.get("phases", {}).items() if "seconds" in p]
    return " (" + ", ".join(f"{n} {s:.0f} s" for n, s in timed) + ")" if timed else ""


def _missing(result: dict[str, Any]) -> list[str]:
    """A partial report says so first, with each phase that did not finish and why."""
    if not result.get("partial"):
        return []
    lines = [
        "**Partial report: this run did not finish every phase.** Missing or incomplete:",
        "",
    ]
    for name in result.get("missing", []):
        phase = result["phases"][name]
        why = phase.get("error") or "; ".join(phase.get("failed_steps") or [])
        lines.append(f"- {name}: {phase['status']}" + (f": {why}" if why else ""))
    return [*lines, ""]


def markdown(result: dict[str, Any]) -> str:
    cpu = result["machine"]["cpu"]
    return "\n".join(
        [
            f"# GPU benchmark `{result['name']}` ({result['created']})",
            "",
            f"GPU: {result['gpu']}. CPU: {cpu['model']}, {result['machine']['cpus_available']} "
            f"CPUs. Model: {result['model']['arch']}, {result['model']['weights']}. "
            f"Command: `{result['command']}`; took {result['duration_s'] / 60:.1f} min"
            + _phase_seconds(result)
            + ".",
            "",
            *_missing(result),
            "## Engine ceiling (the service's CUDA engine, IOBinding, pre-made tensors), img/s",
            "",
            *_engine_table(result),
            "",
            "## Beside the engine: ONNX Runtime's defaults, TF32 off, CUDA graphs",
            "",
            *_variants_table(result),
            "",
            "## The service over HTTP (web and 12 MP photos, closed loop)",
            "",
            *_service_table(result),
            "",
            "## Against the targets",
            "",
            *_targets(result),
            "",
            "## Agreement",
            "",
            *_agreement_table(result),
            "",
        ]
    )


def plot(result: dict[str, Any], path: Path) -> None:
    """Engine img/s against batch size, one line per (precision, cuDNN search)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(7, 4.2))
    for engine in result["engines"]:
        if not engine["batch_sizes"]:
            continue
        sizes = [b["batch_size"] for b in engine["batch_sizes"]]
        axis.plot(
            sizes,
            [b["throughput"] for b in engine["batch_sizes"]],
            "o-" if engine["precision"] == "fp16" else "s--",
            label=f"{engine['precision']}, {engine['algo_search']}",
        )
    axis.set_xscale("log", base=2)
    axis.set_xlabel("batch size")
    axis.set_ylabel("images / s (engine alone)")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7)
    axis.set_title(f"{result['model']['arch']} on {result['gpu'].split(',')[0]}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(result: dict[str, Any], results_dir: Path, with_plot: bool = True) -> list[Path]:
    """NAME.json and NAME.md, and NAME.png where an engine ceiling is measured."""
    results_dir.mkdir(parents=True, exist_ok=True)
    base = results_dir / result["name"]
    paths = [base.with_suffix(".json"), base.with_suffix(".md")]
    paths[0].write_text(json.dumps(result, indent=2) + "\n")
    paths[1].write_text(markdown(result))
    png = base.with_suffix(".png")
    if not any(e["batch_sizes"] for e in result.get("engines", [])):
        png.unlink(missing_ok=True)  # not one from an earlier run
    elif with_plot:
        plot(result, png)
        paths.append(png)
    return paths
