"""Routes to bf16 on CPU, measured on one ONNX file: throughput, start-up, memory, install size.

Run: ``python -m bench.precision_routes [--rounds 5] [--name precision-routes]`` (~10 min)

Routes (densenet121, seeded random weights, batch 8, 2 threads, the same ONNX file):

- ``onnxruntime cpu fp32``: what the service runs today;
- ``openvino fp32`` / ``openvino bf16``: the ``openvino`` runtime beside onnxruntime,
  ``INFERENCE_PRECISION_HINT`` f32 / bf16 (always set: OpenVINO's default on a CPU with
  AVX512-BF16 or AMX is bf16 already);
- ``ort-openvino ep fp32`` / ``ort-openvino ep bf16``: ONNX Runtime's OpenVINO execution
  provider (``onnxruntime-openvino``, which replaces the ``onnxruntime`` package, hence a
  separate virtualenv, ``--ep-venv``, made on first use) with ``load_config``
  {"CPU": {"INFERENCE_PRECISION_HINT": ...}};
- ``ort-openvino cpu fp32``: that package's own CPU provider (what the service's fp32 path
  would become if it switched packages).

Each measurement is a fresh process (``bench/precision_worker.py``), so start-up (session
creation to the first result) and RSS are those of a real start. The routes run
interleaved, ``--rounds`` times, because the machine is shared: the report gives medians
over rounds and ratios to the first route. Writes ``bench/results/NAME.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.machine import describe
from bench.precision_worker import ROUTES

RESULTS_DIR = Path(__file__).parent / "results"
WORKER = Path(__file__).with_name("precision_worker.py")
PACKAGES = {"main": "onnxruntime,openvino,openvino-telemetry", "ep": "onnxruntime-openvino"}


def ensure_ep_venv(venv: Path) -> Path:
    """The onnxruntime-openvino virtualenv (it cannot share one with onnxruntime)."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"making {venv} (onnxruntime-openvino, numpy)", flush=True)
        subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "onnxruntime-openvino", "numpy"], check=True)
    return python


def run_worker(python: Path, args: list[str]) -> Any:
    done = subprocess.run(
        [str(python), str(WORKER), *args], capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def openvino_capabilities() -> dict[str, Any]:
    """What OpenVINO's CPU plugin says this CPU computes natively."""
    import openvino as ov

    core = ov.Core()
    return {
        "version": ov.get_version(),
        "optimization_capabilities": list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")),
        "default_inference_precision": core.get_property(
            "CPU", "INFERENCE_PRECISION_HINT"
        ).to_string(),
    }


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Medians over rounds, and throughput/start-up ratios to the first route."""
    summary: dict[str, dict[str, Any]] = {}
    for route, samples in runs.items():
        summary[route] = {
            "img_per_s": statistics.median(s["img_per_s"] for s in samples),
            "img_per_s_all": [s["img_per_s"] for s in samples],
            "startup_s": statistics.median(s["startup_s"] for s in samples),
            "rss_mib": statistics.median(s["rss_mib"]["VmRSS"] for s in samples),
            "peak_rss_mib": statistics.median(s["rss_mib"]["VmHWM"] for s in samples),
            "first_logits": samples[0]["logits_head"],
            "details": {
                k: v
                for k, v in samples[0].items()
                if k in ("providers", "hint_read_back", "onnxruntime")
            },
        }
    base = next(iter(summary.values()))
    for row in summary.values():
        row["throughput_ratio"] = round(row["img_per_s"] / base["img_per_s"], 2)
    return summary


def _load_line(results: dict[str, Any]) -> list[str]:
    load = results.get("load_average_1m")
    if load is None:
        return []
    return ["", f"1-minute load average: {load['before']:.1f} before, {load['after']:.1f} after."]


def _same_numbers(summary: dict[str, dict[str, Any]]) -> str:
    ep, runtime = summary["ort-openvino ep bf16"], summary["openvino bf16"]
    if ep["first_logits"] == runtime["first_logits"]:
        return "the OpenVINO provider's bf16 gives the OpenVINO runtime's bf16 numbers."
    return "the OpenVINO provider's bf16 numbers differ from the OpenVINO runtime's."


def markdown(results: dict[str, Any]) -> str:
    cpu, ov = results["machine"]["cpu"], results["openvino_cpu"]
    flags, cpus = ", ".join(cpu["flags"]), results["machine"]["cpus_available"]
    capabilities = ", ".join(ov["optimization_capabilities"])
    lines = [
        "# bf16 routes on CPU: one ONNX file, six ways",
        "",
        f"CPU: {cpu['model']}, flags {flags}; {cpus} CPUs available. densenet121 "
        f"(random weights), batch {results['batch']}, "
        f"{results['threads']} threads; medians over {results['rounds']} interleaved rounds "
        f"of {results['runs']} timed runs each (fresh process per measurement). "
        "Reproduce: `python -m bench.precision_routes`.",
        "",
        f"OpenVINO {ov['version']}: OPTIMIZATION_CAPABILITIES {capabilities}; "
        f"default INFERENCE_PRECISION_HINT {ov['default_inference_precision']}.",
        *_load_line(results),
        "",
        "| route | img/s | x onnxruntime fp32 | each round | start-up s | RSS MiB "
        "| peak RSS MiB | first logits |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for route, row in results["summary"].items():
        lines.append(
            f"| {route} | {row['img_per_s']:.1f} | {row['throughput_ratio']:.2f} "
            f"| {', '.join(f'{v:.1f}' for v in row['img_per_s_all'])} | {row['startup_s']:.2f} "
            f"| {row['rss_mib']:.0f} | {row['peak_rss_mib']:.0f} "
            f"| {', '.join(f'{v:.4f}' for v in row['first_logits'])} |"
        )
    sizes = results["install_mib"]
    lines += [
        "",
        "Installed size (MiB, files of the distribution): "
        + ", ".join(f"{k} {v}" for k, v in sizes.items()),
        "",
        "Start-up is session creation (or model compilation) to the first result of batch "
        f"{results['batch']}. The first logits of the same input show which routes compute "
        f"alike: {_same_numbers(results['summary'])}",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, help="default: export densenet121, random, seed 0")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ep-venv", type=Path, default=Path("/tmp/ort-openvino-venv"))
    parser.add_argument("--name", default="precision-routes")
    args = parser.parse_args()
    model = args.model or RESULTS_DIR / "tmp" / "agreement" / "densenet121-random.onnx"
    if not model.exists():
        from model_export import cli

        cli.main(["export", "--weights", "random", "--seed", "0", "-o", str(model)])
    pythons = {"main": Path(sys.executable), "ep": ensure_ep_venv(args.ep_venv)}
    common = ["--model", str(model), "--batch", str(args.batch), "--threads", str(args.threads)]
    runs: dict[str, list[dict[str, Any]]] = {route: [] for route in ROUTES}
    load_before = os.getloadavg()
    for round_ in range(args.rounds):
        for route, (venv, _, _) in ROUTES.items():
            sample = run_worker(pythons[venv], [route, *common, "--runs", str(args.runs)])
            runs[route].append(sample)
            print(
                f"round {round_ + 1}/{args.rounds} {route}: {sample['img_per_s']} img/s, "
                f"start-up {sample['startup_s']} s",
                flush=True,
            )
    install: dict[str, float] = {}
    for venv, packages in PACKAGES.items():
        install |= run_worker(pythons[venv], ["sizes", "--packages", packages])
    results = {
        "machine": describe(),
        "openvino_cpu": openvino_capabilities(),
        "batch": args.batch,
        "threads": args.threads,
        "rounds": args.rounds,
        "runs": args.runs,
        "model": str(model),
        "summary": summarize(runs),
        "install_mib": install,
        # The machine is shared: a 1-minute load average far above the CPU count means
        # the absolute img/s are depressed; the interleaved ratios stay comparable.
        "load_average_1m": {"before": load_before[0], "after": os.getloadavg()[0]},
        "samples": runs,
    }
    (RESULTS_DIR / f"{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS_DIR / f"{args.name}.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
