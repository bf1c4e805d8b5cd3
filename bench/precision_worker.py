"""One measurement of ``bench/precision_routes.py``, in a fresh process.

``python bench/precision_worker.py ROUTE --model M.onnx``: prints one JSON line with the
session creation and start-up times (creation to the first result), img/s (median of
``--runs`` timed runs after one warm-up), RSS and peak RSS. ``sizes --packages a,b``
prints the installed size of distributions. It imports only the standard library, numpy
and the runtime under test, so that it runs in the virtualenv of ``onnxruntime-openvino``
(which replaces ``onnxruntime`` and so cannot share the project's) as well.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

# route -> (virtualenv: "main" or "ep", runtime, precision)
ROUTES: dict[str, tuple[str, str, str]] = {
    "onnxruntime cpu fp32": ("main", "ort-cpu", "fp32"),
    "openvino fp32": ("main", "openvino", "f32"),
    "openvino bf16": ("main", "openvino", "bf16"),
    "ort-openvino ep fp32": ("ep", "ort-ov-ep", "f32"),
    "ort-openvino ep bf16": ("ep", "ort-ov-ep", "bf16"),
    "ort-openvino cpu fp32": ("ep", "ort-cpu", "fp32"),
}


def _session(runtime: str, precision: str, model: str, threads: int) -> Any:
    """A callable batch -> logits for one route (the runtime is imported here, on purpose)."""
    if runtime == "openvino":
        import openvino as ov

        config = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads}
        compiled = ov.Core().compile_model(model, "CPU", {**config, "PERFORMANCE_HINT": "LATENCY"})
        request, output = compiled.create_infer_request(), compiled.output(0)
        info = {"hint_read_back": compiled.get_property("INFERENCE_PRECISION_HINT").to_string()}
        return (lambda x: request.infer({0: x})[output]), info
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if runtime == "ort-ov-ep":
        provider_options = {
            "device_type": "CPU",
            "num_of_threads": str(threads),
            "load_config": json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": precision}}),
        }
        providers: list[Any] = [("OpenVINOExecutionProvider", provider_options)]
    else:
        providers = ["CPUExecutionProvider"]
    session = ort.InferenceSession(model, options, providers=providers)
    info = {"providers": session.get_providers(), "onnxruntime": ort.__version__}
    return (lambda x: session.run(None, {"input": x})[0]), info


def _rss_mib() -> dict[str, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


def worker(route: str, model: str, batch: int, threads: int, runs: int) -> dict[str, Any]:
    """Measure one route in this fresh process."""
    _, runtime, precision = ROUTES[route]
    x = np.random.default_rng(0).normal(size=(batch, 3, 224, 224)).astype(np.float32)
    started = time.perf_counter()
    run, info = _session(runtime, precision, model, threads)
    created = time.perf_counter()
    first = np.asarray(run(x))
    startup = time.perf_counter() - started
    run(x)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t)
    return {
        "route": route,
        "session_s": round(created - started, 3),
        "startup_s": round(startup, 3),
        "img_per_s": round(batch / statistics.median(times), 2),
        "rss_mib": _rss_mib(),
        "logits_head": [round(float(v), 5) for v in first[0, :3]],
        **info,
    }


def install_mib(names: list[str]) -> float:
    """Disk size of the installed files of these distributions."""
    total = 0
    for name in names:
        for file in metadata.distribution(name).files or []:
            path = Path(str(file.locate()))
            total += path.stat().st_size if path.is_file() else 0
    return round(total / 2**20, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=[*ROUTES, "sizes"])
    parser.add_argument("--model", default="")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--packages", default="")
    args = parser.parse_args()
    if args.what == "sizes":
        print(json.dumps({n: install_mib([n]) for n in args.packages.split(",")}))
    else:
        print(json.dumps(worker(args.what, args.model, args.batch, args.threads, args.runs)))


if __name__ == "__main__":
    main()
