"""Proof that ONNX Runtime runs on the GPU here, not on a silent CPU fallback.

Run: ``python -m bench.gpu_proof OUT.json`` (scripts/gpu-check.sh does, before ``bench gpu``).

ONNX Runtime falls back to the CPU when the CUDA provider cannot load (a missing CUDA or
cuDNN library is only a warning on stderr). This builds a small convolutional model in
memory (no torch needed), opens it with CUDA then CPU, and asks three witnesses: the
session's providers, ONNX Runtime's profiler (which provider ran each node) and the CUDA
libraries this process loaded. It also records the CUDA provider's options (``use_tf32``
says whether fp32 convolutions may use TF32) and compares the output with the CPU's.
Exits 1 with one line when any witness says CPU.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

CUDA = "CUDAExecutionProvider"
LIBRARIES = ("libcuda.so", "libcudart", "libcublas", "libcudnn", "libcufft", "libcurand")
LIBRARIES += ("libnvrtc",)
PACKAGES = ("onnxruntime-gpu", "onnxruntime", "numpy", "torch", "nvidia-cudnn-cu13", "fastapi")


def tiny_model() -> bytes:
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm, on a 3x64x64 input."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {
        "w": rng.standard_normal((16, 3, 3, 3)).astype(np.float32),
        "fc": rng.standard_normal((10, 16)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "proof",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 3, 64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 10])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def loaded_libraries() -> list[str]:
    """The CUDA libraries mapped into this process, by path."""
    maps = Path("/proc/self/maps").read_text().splitlines()
    paths = {line.split()[-1] for line in maps if "/" in line}
    return sorted(p for p in paths if any(name in Path(p).name for name in LIBRARIES))


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def prove(work: Path) -> dict[str, Any]:
    import onnxruntime as ort

    model = tiny_model()
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(work / "profile")
    session = ort.InferenceSession(model, options, providers=[CUDA, "CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((8, 3, 64, 64)).astype(np.float32)
    for _ in range(3):
        (gpu,) = session.run(None, {"x": x})
    profile = json.loads(Path(session.end_profiling()).read_text())
    ran_on = Counter(
        (event["args"].get("op_name", "?"), event["args"].get("provider", "?"))
        for event in profile
        if event.get("cat") == "Node" and "provider" in event.get("args", {})
    )
    cpu = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    (reference,) = cpu.run(None, {"x": x})
    return {
        "onnxruntime": ort.__version__,
        "device": ort.get_device(),
        "available_providers": ort.get_available_providers(),
        "session_providers": session.get_providers(),
        "cuda_provider_options": session.get_provider_options().get(CUDA),
        "nodes_ran_on": [{"op": op, "provider": p, "runs": n} for (op, p), n in ran_on.items()],
        "loaded_libraries": loaded_libraries(),
        "max_abs_diff_vs_cpu": float(np.max(np.abs(gpu - reference))),
        "packages": versions(),
    }


def verdict(proof: dict[str, Any]) -> str | None:
    """Why this is not a GPU run, or None when every witness says CUDA."""
    if proof["session_providers"][:1] != [CUDA]:
        return f"the session runs on {proof['session_providers']} (CUDA did not load; see above)"
    conv = [n for n in proof["nodes_ran_on"] if n["op"] == "Conv"]
    if not conv or any(n["provider"] != CUDA for n in conv):
        return f"ONNX Runtime's profiler saw the convolution run on {conv}"
    if not any("libcudnn" in p for p in proof["loaded_libraries"]):
        return "no libcudnn was loaded"
    return None


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    with tempfile.TemporaryDirectory() as work:
        proof = prove(Path(work))
    out.write_text(json.dumps(proof, indent=2) + "\n")
    problem = verdict(proof)
    if problem:
        print(f"gpu-check: FAIL: not on the GPU: {problem} ({out})", file=sys.stderr)
        return 1
    on_cuda = sum(n["runs"] for n in proof["nodes_ran_on"] if n["provider"] == CUDA)
    total = sum(n["runs"] for n in proof["nodes_ran_on"])
    tf32 = (proof["cuda_provider_options"] or {}).get("use_tf32")
    print(
        f"gpu-check: ok: CUDAExecutionProvider runs {on_cuda}/{total} node runs; "
        f"{len(proof['loaded_libraries'])} CUDA libraries loaded; use_tf32={tf32}; "
        f"max |GPU - CPU| = {proof['max_abs_diff_vs_cpu']:.2g}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
