"""A real ONNX classifier that takes as long as a test needs: its graph spins a Loop
whose trip count depends on the input (zeros, as warm-up sends, cost nothing)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

LABELS = ["red", "green", "blue"]


def slow_model(path: Path, iterations: int) -> Path:
    """[n,3,224,224] -> [n,3] channel means, after `iterations` loop turns for any input
    with a value above 0.5 (a real photo), none for zeros."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, 224, 224])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 3])
    body = helper.make_graph(
        [
            helper.make_node("Add", ["acc_in", "one"], ["acc_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "spin",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, []),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, []),
        ],
        initializer=[numpy_helper.from_array(np.array(0.0, np.float32), "one")],
    )
    constants = {
        "half": np.array(0.5, np.float32),
        "turns": np.array(iterations, np.int64),
        "true": np.array(True),
        "zero": np.array(0.0, np.float32),
        "shape": np.array([-1, 3], np.int64),
    }
    nodes = [
        helper.make_node("ReduceMax", ["input"], ["peak"], keepdims=0),
        helper.make_node("Greater", ["peak", "half"], ["busy"]),
        helper.make_node("Cast", ["busy"], ["busy_i"], to=TensorProto.INT64),
        helper.make_node("Mul", ["busy_i", "turns"], ["trips"]),
        helper.make_node("Loop", ["trips", "true", "zero"], ["spun"], body=body),
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Reshape", ["pooled", "shape"], ["means"]),
        helper.make_node("Add", ["means", "spun"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "slow",
        [x],
        [y],
        initializer=[numpy_helper.from_array(v, k) for k, v in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in {"labels": json.dumps(LABELS), "arch": "slow", "weights": "random"}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def calibrated_slow_model(path: Path, seconds: float) -> Path:
    """A slow model whose inference on a photo takes about `seconds` on this machine."""
    probe = slow_model(path, 200_000)
    session = ort.InferenceSession(str(probe), providers=["CPUExecutionProvider"])
    batch = np.ones((1, 3, 224, 224), np.float32)
    session.run(None, {"input": batch})
    started = time.perf_counter()
    session.run(None, {"input": batch})
    per_turn = (time.perf_counter() - started) / 200_000
    return slow_model(path, max(1000, int(seconds / per_turn)))
