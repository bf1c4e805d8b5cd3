"""Engine: loads real exported models, validates odd ones, reads metadata with defaults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from app.engine import Engine, warm_up
from app.errors import ModelLoadError
from app.precision import CPU, EngineChoice, resolve_providers
from app.runtimes.onnxruntime import OnnxRuntimeEngine

FP32_CPU = EngineChoice("onnxruntime", "fp32", (CPU,), "test")


def load(path: Path) -> Engine:
    return OnnxRuntimeEngine(path, FP32_CPU, intra_op_threads=1)


def test_loads_exported_model(tiny_model: Path) -> None:
    engine = load(tiny_model)
    spec = engine.spec
    assert (spec.name, spec.arch, spec.weights) == ("densenet-tiny", "densenet-tiny", "checkpoint")
    assert spec.num_classes == 1000
    assert spec.labels[0] == "tench"
    assert spec.recipe.crop_size == 224
    assert spec.metadata_warnings == []
    logits = engine.run(np.zeros((3, 3, 224, 224), np.float32))
    assert logits.shape == (3, 1000)
    assert logits.dtype == np.float32
    warm_up(engine, runs=1, batch_size=4)


def test_missing_metadata_gets_defaults_with_warnings(tmp_path: Path, tiny_model: Path) -> None:
    bare = tmp_path / "bare.onnx"
    model = onnx.load(str(tiny_model))
    del model.metadata_props[:]
    onnx.save(model, str(bare))
    spec = load(bare).spec
    assert spec.name == "bare"
    assert spec.weights == "unknown"
    assert spec.labels[:2] == ["class_0", "class_1"]
    assert (spec.recipe.resize_size, spec.recipe.crop_size) == (256, 224)
    assert spec.recipe.mean == (0.485, 0.456, 0.406)
    assert len(spec.metadata_warnings) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"", "cannot load"),
        (b"this is not a protobuf at all", "cannot load"),
    ],
)
def test_unloadable_files(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "model.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message):
        load(path)


def test_truncated_model(tmp_path: Path, tiny_model: Path) -> None:
    path = tmp_path / "truncated.onnx"
    path.write_bytes(tiny_model.read_bytes()[: tiny_model.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="cannot load"):
        load(path)


def graph_model(
    tmp_path: Path,
    in_shape: list[object],
    out_shape: list[object],
    in_type: int = TensorProto.FLOAT,
    meta: dict[str, str] | None = None,
) -> Path:
    """A one-node model (global average pool + flatten) with the given I/O shapes."""
    x = helper.make_tensor_value_info("x", in_type, in_shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["p"]),
        helper.make_node("Flatten", ["p"], ["y"]),
    ]
    if in_type != TensorProto.FLOAT:
        nodes = [
            helper.make_node("Cast", ["x"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("GlobalAveragePool", ["f"], ["p"]),
            helper.make_node("Flatten", ["p"], ["y"]),
        ]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]
    )
    for key, value in (meta or {}).items():
        model.metadata_props.add(key=key, value=value)
    path = tmp_path / "graph.onnx"
    onnx.save(model, str(path))
    return path


def test_any_nchw_float_classifier_is_servable(tmp_path: Path) -> None:
    path = graph_model(
        tmp_path, ["n", 3, 224, 224], ["n", 3], meta={"labels": '["red", "green", "blue"]'}
    )
    engine = load(path)
    assert engine.spec.labels == ["red", "green", "blue"]
    assert engine.run(np.ones((2, 3, 224, 224), np.float32)).shape == (2, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"in_shape": ["n", 224, 224, 3], "out_shape": ["n", 224]}, "expected a float32 input"),
        (
            {"in_shape": ["n", 3, 224, 224], "out_shape": ["n", 3], "in_type": TensorProto.UINT8},
            "expected a float32 input",
        ),
        ({"in_shape": ["n", 3, 299, 299], "out_shape": ["n", 3]}, "crop size is 224"),
        ({"in_shape": [4, 3, 224, 224], "out_shape": [4, 3]}, "fixed batch size 4"),
        (
            {
                "in_shape": ["n", 3, 224, 224],
                "out_shape": ["n", 3],
                "meta": {"labels": '["a", "b"]'},
            },
            "3 classes but has 2 labels",
        ),
        (
            {"in_shape": ["n", 3, 224, 224], "out_shape": ["n", 3], "meta": {"labels": "cat"}},
            "not a JSON list",
        ),
        (
            {"in_shape": ["n", 3, 224, 224], "out_shape": ["n", 3], "meta": {"mean": "[1]"}},
            "invalid preprocessing recipe",
        ),
        (
            {
                "in_shape": ["n", 3, 224, 224],
                "out_shape": ["n", 3],
                "meta": {"interpolation": "lanczos"},
            },
            "invalid preprocessing recipe",
        ),
    ],
)
def test_models_that_are_not_nchw_classifiers(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ModelLoadError, match=message):
        load(graph_model(tmp_path, **kwargs))  # type: ignore[arg-type]


def test_fixed_batch_of_one_is_served(tmp_path: Path) -> None:
    engine = load(graph_model(tmp_path, [1, 3, 224, 224], [1, 3]))
    assert engine.spec.fixed_batch == 1
    warm_up(engine, runs=1, batch_size=8)  # clamps to the model's batch of one


def test_providers() -> None:
    cpu_only = ("CPUExecutionProvider",)
    assert resolve_providers(None, cpu_only) == ["CPUExecutionProvider"]
    assert (
        resolve_providers(None, ("CUDAExecutionProvider", *cpu_only))[0] == "CUDAExecutionProvider"
    )
    assert resolve_providers(["CPUExecutionProvider"], cpu_only) == ["CPUExecutionProvider"]
    with pytest.raises(ModelLoadError, match="not available"):
        resolve_providers(["CUDAExecutionProvider", "CPUExecutionProvider"], cpu_only)
    with pytest.raises(ModelLoadError, match="not available"):
        resolve_providers(["NoSuchExecutionProvider"], cpu_only)
