"""What the service's CUDA engine does not offer, measured beside it: CUDA graphs and TF32.

Run: ``python -m bench.gpu_variants --model M.onnx --batch-sizes 1,8,32 --seconds 2
[--settings default,no_tf32]``. Prints one JSON object. ``python -m bench gpu`` runs it twice
per precision: ``default,no_tf32``, then ``cuda_graph`` alone, so that a crash while a CUDA
graph is captured loses only that setting.

The service's engine (app/runtimes/onnxruntime.py) uses ONNX Runtime's CUDA provider with
its defaults, so fp32 uses TF32 wherever ONNX Runtime's ``use_tf32`` default allows it,
and no CUDA graph. This opens the same file with plain ONNX Runtime sessions and the same
IOBinding pattern (device buffers per batch size) in three settings:

- ``default``: the provider's defaults (what the service runs);
- ``no_tf32``: ``use_tf32=0``, strict fp32 (its logits against ``default`` say what TF32
  changes, and its speed what it buys);
- ``cuda_graph``: ``enable_cuda_graph=1``, one session per batch size (ONNX Runtime captures
  one graph per session), launched by replay. A failure is recorded, not raised.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.stats import latency_summary

CUDA = "CUDAExecutionProvider"
SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "no_tf32": {"use_tf32": "0"},
    "cuda_graph": {"enable_cuda_graph": "1"},
}


def session(model: Path, options: dict[str, str]) -> Any:
    import onnxruntime as ort

    providers = [(CUDA, {"cudnn_conv_algo_search": "HEURISTIC", **options}), "CPUExecutionProvider"]
    opened = ort.InferenceSession(str(model), providers=providers)
    if opened.get_providers()[0] != CUDA:
        raise RuntimeError(f"the session runs on {opened.get_providers()}")
    return opened


def measure(opened: Any, batch: np.ndarray, seconds: float) -> tuple[dict[str, Any], np.ndarray]:
    """Back-to-back IOBinding runs on device buffers; the last logits for comparison."""
    import onnxruntime as ort

    dtype = np.float16 if opened.get_inputs()[0].type == "tensor(float16)" else np.float32
    batch = batch.astype(dtype)
    classes = opened.get_outputs()[0].shape[1]
    x = ort.OrtValue.ortvalue_from_numpy(batch, "cuda", 0)
    y = ort.OrtValue.ortvalue_from_shape_and_type((len(batch), classes), dtype, "cuda", 0)
    binding = opened.io_binding()
    binding.bind_ortvalue_input(opened.get_inputs()[0].name, x)
    binding.bind_ortvalue_output(opened.get_outputs()[0].name, y)
    for _ in range(3):  # the first run of a CUDA graph session captures the graph
        opened.run_with_iobinding(binding)
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 3:
        begin = time.perf_counter()
        x.update_inplace(batch)
        opened.run_with_iobinding(binding)
        logits = y.numpy()
        times.append(time.perf_counter() - begin)
    result = {"batch_size": len(batch), "throughput": len(batch) * len(times) / sum(times)}
    return {**result, "latency_ms": latency_summary(times)}, logits.astype(np.float32)


def run(model: Path, sizes: list[int], seconds: float, settings: list[str]) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    batches = {s: rng.standard_normal((s, 3, 224, 224), dtype=np.float32) for s in sizes}
    results: dict[str, Any] = {}
    logits: dict[str, np.ndarray] = {}
    for name in settings:
        options = SETTINGS[name]
        measured: list[dict[str, Any]] = []
        try:
            # A CUDA graph is captured once per session: one session per batch size.
            shared = None if name == "cuda_graph" else session(model, options)
            for size in sizes:
                opened = shared or session(model, options)
                one, last = measure(opened, batches[size], seconds)
                measured.append(one)
                logits[name] = last  # the largest batch's, for the comparison below
                print(f"    {name} batch {size}: {one['throughput']:.0f} img/s", file=sys.stderr)
            provider_options = opened.get_provider_options().get(CUDA, {})
            results[name] = {"batch_sizes": measured, "provider_options": provider_options}
        except Exception as exc:  # a variant that does not run is a result, not a crash
            results[name] = {"batch_sizes": measured, "error": f"{type(exc).__name__}: {exc}"}
    if "default" in logits and "no_tf32" in logits:
        diff = np.abs(logits["default"] - logits["no_tf32"])
        same = np.argmax(logits["default"], 1) == np.argmax(logits["no_tf32"], 1)
        results["tf32_effect"] = {
            "max_abs_logit_diff": float(diff.max()),
            "same_top1": float(same.mean()),
        }
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_variants", description=__doc__)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"of {', '.join(SETTINGS)}")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    settings = args.settings.split(",")
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        parser.error(f"unknown --settings {', '.join(sorted(unknown))}")
    json.dump(run(args.model, sizes, args.seconds, settings), sys.stdout)


if __name__ == "__main__":
    main()
