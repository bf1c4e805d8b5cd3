"""Which file format an int8 export should have: QDQ ONNX or OpenVINO IR, measured.

Run: ``python -m bench.int8_formats [--rounds 5] [--seconds 4] [--name int8-formats]``

One densenet121 export (seeded random weights) is quantized twice by NNCF with the same
calibration set (``model_export.quantize.calibration_set``, 300 inputs): with NNCF's ONNX
backend (QuantizeLinear/DequantizeLinear pairs in an ONNX file, what ``model_export
quantize`` writes) and with its OpenVINO backend (FakeQuantize in OpenVINO IR). Both are
compiled by OpenVINO's CPU plugin as the service compiles them (f32 hint, LATENCY, 2
threads) and run at batch 8, interleaved for ``--rounds`` rounds beside the fp32 file; the
report gives medians, the int8 layer count of each compiled model and each file's size.
Writes ``bench/results/NAME.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import describe
from bench.runner import prepare_model

RESULTS_DIR = Path(__file__).parent / "results"


def quantize_both(model: Path, workdir: Path) -> dict[str, Path]:
    import nncf
    import openvino as ov

    from model_export import photos
    from model_export.quantize import calibration_set, quantize

    qdq, ir = workdir / "densenet121-qdq.onnx", workdir / "densenet121-int8.xml"
    calibration = calibration_set(model, photos.bundled_photo_paths(), "bundled photos", 300, 1)
    if not qdq.exists():
        quantize(model, qdq, calibration, "performance")
    if not ir.exists():
        dataset = nncf.Dataset(calibration.tensors)
        quantized = nncf.quantize(ov.Core().read_model(str(model)), dataset, subset_size=300)
        ov.save_model(quantized, str(ir))
    return {"fp32 onnx": model, "int8 qdq onnx": qdq, "int8 openvino ir": ir}


def compile_file(path: Path, threads: int) -> Any:
    import openvino as ov

    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    return ov.Core().compile_model(str(path), "CPU", {**config, "INFERENCE_NUM_THREADS": threads})


def throughput(compiled: Any, batch_size: int, seconds: float) -> float:
    request = compiled.create_infer_request()
    batch = np.random.default_rng(0).standard_normal((batch_size, 3, 224, 224), np.float32)
    for _ in range(2):
        request.infer({0: batch})
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        request.infer({0: batch})
        runs += 1
    return batch_size * runs / (time.perf_counter() - started)


def markdown(result: dict[str, Any]) -> str:
    cpu = result["machine"]["cpu"]
    lines = [
        "# int8 file formats: QDQ ONNX against OpenVINO IR",
        "",
        f"{result['created']}; CPU: {cpu['model']} ({', '.join(cpu['flags'])}); "
        f"densenet121 (random weights, seed 0), OpenVINO CPU plugin, batch "
        f"{result['batch_size']}, {result['threads']} threads, {result['rounds']} interleaved "
        f"rounds of {result['seconds']:g} s. Command: `python -m bench.int8_formats`.",
        "",
        "| file | size | int8 layers | img/s (median) | readings | vs fp32 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    base = statistics.median(result["files"]["fp32 onnx"]["readings"])
    for name, info in result["files"].items():
        median = statistics.median(info["readings"])
        readings = ", ".join(f"{r:.1f}" for r in info["readings"])
        lines.append(
            f"| {name} | {info['mb']:.1f} MB | {info['int8_layers']} | {median:.1f} "
            f"| {readings} | {median / base:.2f}x |"
        )
    return "\n".join([*lines, ""])


def main() -> None:
    from app.runtimes.openvino import int8_layers

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default="int8-formats")
    args = parser.parse_args()
    workdir = RESULTS_DIR / "tmp" / args.name
    workdir.mkdir(parents=True, exist_ok=True)
    _, model = prepare_model("densenet121", 0, workdir)
    files = quantize_both(model, workdir)
    compiled = {name: compile_file(path, args.threads) for name, path in files.items()}
    info: dict[str, Any] = {}
    for name, path in files.items():
        int8, weighted = int8_layers(compiled[name])
        size = sum(p.stat().st_size for p in (path, path.with_suffix(".bin")) if p.exists())
        info[name] = {"mb": size / 1e6, "int8_layers": f"{int8} of {weighted}", "readings": []}
    for round_ in range(args.rounds):
        for name in files:
            reading = throughput(compiled[name], args.batch_size, args.seconds)
            info[name]["readings"].append(reading)
            print(f"round {round_ + 1}: {name}: {reading:.1f} img/s", flush=True)
    result = {
        "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": describe(),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "files": info,
    }
    (RESULTS_DIR / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS_DIR / f"{args.name}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
