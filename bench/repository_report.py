"""Write a model-repository run: ``<name>.json``, ``<name>.md`` and ``<name>.png``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.cpu import is_noisy

ROW_HEADER = (
    "| server | traffic | model | clients | img/s | p50 ms | p99 ms | mean batch "
    "| queue wait ms | peak RSS MB | other CPU |\n|---|---|---|---|---|---|---|---|---|---|---|"
)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _row(server: str, traffic: str, model: str, part: dict[str, Any], step: dict[str, Any]) -> str:
    lat, metrics = part["latency_ms"], part.get("metrics", {})
    other = step.get("other_cpu_cores")
    return (
        f"| {server} | {traffic} | {model} | {part.get('clients', '')} "
        f"| {part['throughput']:.1f} | {_num(lat['p50'], 0)} | {_num(lat['p99'], 0)} "
        f"| {_num(metrics.get('mean_batch_size'), 2)} "
        f"| {_num(metrics.get('mean_queue_wait_ms'))} | {_num(step['peak_rss_mb'], 0)} "
        f"| {_num(other, 2)}{' (noisy)' if is_noisy(step) else ''} |"
    )


def _step_rows(server: str, step: dict[str, Any]) -> list[str]:
    models = step["models"]
    if len(models) == 1:
        total = step | {"clients": step["per_model"][models[0]]["clients"]}
        return [_row(server, f"{models[0]} alone", models[0], total, step)]
    rows = [
        _row(
            server,
            "mixed",
            "**all**",
            step | {"clients": sum(p["clients"] for p in step["per_model"].values())},
            step,
        )
    ]
    rows += [_row(server, "mixed", m, p, step) for m, p in step["per_model"].items()]
    return rows


def mixed_summary(result: dict[str, Any]) -> dict[str, Any]:
    """Mixed-model img/s against the single-model figure and against time-sharing the
    device between the models at their own single-model speed (the cost of smaller
    batches)."""
    steps = result["servers"]["all"]["steps"]
    alone = {s["models"][0]: s["throughput"] for s in steps if len(s["models"]) == 1}
    mixed = next(s for s in steps if len(s["models"]) > 1)
    single = result["servers"]["single"]["steps"][0]
    shares = {m: p["throughput"] for m, p in mixed["per_model"].items()}
    seconds_alone = sum(t / alone[m] for m, t in shares.items() if alone.get(m))
    expected = sum(shares.values()) / seconds_alone if seconds_alone else None
    return {
        "single_model_throughput": single["throughput"],
        "reference_in_all_throughput": alone.get(result["plan"]["reference"]),
        "mixed_throughput": mixed["throughput"],
        "mixed_over_single": mixed["throughput"] / single["throughput"],
        "time_shared_expectation": expected,
        "mixed_over_expectation": mixed["throughput"] / expected if expected else None,
    }


def _memory_lines(result: dict[str, Any]) -> list[str]:
    lines = [
        "## Service memory (VmRSS / VmHWM of the server process)",
        "",
        "| server | models | idle after warm-up MB | peak under load MB | RSS after load MB |",
        "|---|---|---|---|---|",
    ]
    for label, server in result["servers"].items():
        peak = max(s["peak_rss_mb"] or 0 for s in server["steps"])
        after = server["steps"][-1]["rss_after_mb"]
        lines.append(
            f"| {label} | {', '.join(server['models'])} | {server['idle']['rss_mb']:.0f} "
            f"| {peak:.0f} | {after:.0f} |"
        )
    return lines


def _options_lines(memory: dict[str, Any] | None) -> list[str]:
    if not memory:
        return []
    lines = [
        "",
        "## ONNX Runtime memory options (`bench/memory_options.py`, every model in one process)",
        "",
        f"Batch size {memory['batch_size']}; img/s over {memory['rounds']} round-robin passes "
        "of one batch per model; then one batch of every size 1..8 per model.",
        "",
        "| variant | changes | loaded MB | warm MB | after batch-8 passes MB "
        "| after sizes 1-8 MB | peak MB | img/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in memory["variants"]:
        lines.append(
            f"| {v['variant']} | {v['changes']} | {v['rss_loaded_mb']:.0f} "
            f"| {v['rss_warm_mb']:.0f} | {v['rss_steady_mb']:.0f} | {v['rss_end_mb']:.0f} "
            f"| {v['peak_mb']:.0f} "
            f"| {v['throughput']:.1f} |"
        )
    return lines


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    summary = mixed_summary(result)
    lines = [
        f"# Model repository benchmark `{result['name']}` ({result['created']})",
        "",
        f"Machine: {m['cpu']['model']} ({', '.join(m['cpu']['flags'])}), "
        f"{m['cpus_available']} CPUs available, {m['memory_gib']} GiB; {m['os']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + ".",
        f"Command: `{result['command']}`; took {result['duration_s'] / 60:.1f} min. Models: "
        + ", ".join(f"{n} ({mb:.0f} MB file)" for n, mb in result["model_file_mb"].items())
        + ", seeded random weights, service defaults (max batch 8).",
        "The CPUs are shared with other work: other processes' load (last column) moves "
        "img/s between steps; compare within one run, and read mean batch and RSS first.",
        "",
        "## Throughput",
        "",
        ROW_HEADER,
    ]
    for label, server in result["servers"].items():
        for step in server["steps"]:
            lines += _step_rows(label, step)
    lines += [
        "",
        f"Mixed / single-model img/s: {summary['mixed_over_single']:.2f}. Mixed / the "
        "time-shared expectation (each model's share of the mixed answers at its own speed "
        f"alone in the same server): {_num(summary['mixed_over_expectation'], 2)}.",
        "",
        *_memory_lines(result),
        *_options_lines(result.get("memory_options")),
    ]
    if result.get("notes"):  # added to the JSON by hand: follow-up measurements, caveats
        lines += ["", "## Notes", "", *(f"- {note}" for note in result["notes"])]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """Img/s per traffic mix (stacked by model) and service RSS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    bars = [
        (f"{label}\n{'+'.join(s['models']) if len(s['models']) < 3 else 'mixed'}", s)
        for label, server in result["servers"].items()
        for s in server["steps"]
    ]
    colors = {m: f"C{i}" for i, m in enumerate(result["servers"]["all"]["models"])}
    for x, (_, step) in enumerate(bars):
        bottom = 0.0
        for model, part in step["per_model"].items():
            label = model if x == len(bars) - 1 else None
            left.bar(x, part["throughput"], bottom=bottom, color=colors.get(model), label=label)
            bottom += part["throughput"]
    left.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=7)
    left.set_ylabel("img/s")
    left.legend(fontsize=7)
    left.set_title(f"{result['plan']['clients']} clients, closed loop")
    labels = list(result["servers"])
    idle = [result["servers"][k]["idle"]["rss_mb"] for k in labels]
    peak = [max(s["peak_rss_mb"] or 0 for s in result["servers"][k]["steps"]) for k in labels]
    right.bar([i - 0.2 for i in range(len(labels))], idle, 0.4, label="idle after warm-up")
    right.bar([i + 0.2 for i in range(len(labels))], peak, 0.4, label="peak under load")
    right.set_xticks(range(len(labels)), labels)
    right.set_ylabel("RSS MiB")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(result: dict[str, Any], results_dir: Path) -> list[Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    name = result["name"]
    paths = [results_dir / f"{name}.json", results_dir / f"{name}.md", results_dir / f"{name}.png"]
    paths[0].write_text(json.dumps(result, indent=1) + "\n")
    paths[1].write_text(markdown(result))
    plot(result, paths[2])
    return paths
