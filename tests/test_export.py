"""model_export: the CLI a user runs, the ONNX it writes, the metadata contract, parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torchvision import models as tvm

from model_export import metadata as md
from model_export.models import TINY_ARCH, TINY_CONFIG, build, fix_legacy_keys, recipe_from_weights
from tests.conftest import run_cli

REQUIRED_KEYS = {
    md.LABELS,
    md.RESIZE_SIZE,
    md.CROP_SIZE,
    md.INTERPOLATION,
    md.MEAN,
    md.STD,
    md.ARCH,
    md.WEIGHTS,
    md.WEIGHTS_SOURCE,
    md.EXPORTED_WITH,
    md.PRECISION,
}


def served_metadata(path: Path) -> dict[str, str]:
    """Metadata as the service reads it: through ONNX Runtime alone."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(session.get_modelmeta().custom_metadata_map)


def ort_logits(path: Path, inputs: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {session.get_inputs()[0].name: inputs})[0])


@pytest.mark.slow
def test_densenet121_random_export_is_complete(tmp_path: Path) -> None:
    """The user guide's documented offline export: densenet121, random weights, seed 0."""
    out = tmp_path / "densenet121.onnx"
    result = run_cli(
        "export",
        "--arch",
        "densenet121",
        "--weights",
        "random",
        "--seed",
        "0",
        "--output",
        out,
        in_process=False,
    )
    assert result.returncode == 0, result.stderr
    assert "parity: max |PyTorch - ONNX Runtime|" in result.stdout
    assert "parameters: 7,978,856" in result.stdout
    meta = served_metadata(out)
    assert meta.keys() >= REQUIRED_KEYS
    labels = json.loads(meta[md.LABELS])
    assert len(labels) == 1000
    assert labels[207] == "golden retriever"
    assert (meta[md.ARCH], meta[md.WEIGHTS], meta[md.WEIGHTS_SOURCE]) == (
        "densenet121",
        "random",
        "seed=0",
    )
    assert meta[md.RESIZE_SIZE] == "256"
    assert meta[md.PRECISION] == "fp32"
    assert meta[md.CROP_SIZE] == "224"
    assert json.loads(meta[md.EXPORTED_WITH])["torch"] == torch.__version__
    model = onnx.load(str(out))
    assert model.opset_import[0].version >= 17
    input_shape = [
        d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim
    ]
    assert input_shape == ["batch", 3, 224, 224]
    assert ort_logits(out, np.zeros((5, 3, 224, 224), np.float32)).shape == (5, 1000)


def test_same_seed_same_model_different_seed_different(tmp_path: Path) -> None:
    paths = []
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        paths.append(tmp_path / f"{name}.onnx")
        assert (
            run_cli(
                "export",
                "--arch",
                TINY_ARCH,
                "--weights",
                "random",
                "--seed",
                seed,
                "-o",
                paths[-1],
            ).returncode
            == 0
        )
    x = np.random.default_rng(0).normal(size=(2, 3, 224, 224)).astype(np.float32)
    a, b, c = (ort_logits(p, x) for p in paths)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize(
    ("arch", "params", "weights"),
    [
        ("densenet121", 7_978_856, tvm.DenseNet121_Weights.IMAGENET1K_V1),
        ("densenet161", 28_681_000, tvm.DenseNet161_Weights.IMAGENET1K_V1),
        ("densenet169", 14_149_480, tvm.DenseNet169_Weights.IMAGENET1K_V1),
        ("densenet201", 20_013_928, tvm.DenseNet201_Weights.IMAGENET1K_V1),
    ],
)
def test_each_arch_builds_with_its_recipe(arch: str, params: int, weights: object) -> None:
    """Graph level for the big ones: the architecture, its size, a forward pass, its recipe."""
    model = build(arch).eval()
    assert sum(p.numel() for p in model.parameters()) == params
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)
    recipe = recipe_from_weights(weights)
    assert (recipe.resize_size, recipe.crop_size, recipe.interpolation) == (256, 224, "bilinear")


def test_checkpoint_export_matches_eager(tmp_path: Path, tiny_checkpoint: Path) -> None:
    out = tmp_path / "ckpt.onnx"
    result = run_cli("export", "--arch", TINY_ARCH, "--checkpoint", tiny_checkpoint, "-o", out)
    assert result.returncode == 0, result.stderr
    model = tvm.DenseNet(num_classes=1000, **TINY_CONFIG).eval()
    model.load_state_dict(torch.load(tiny_checkpoint, weights_only=True))
    x = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.max(np.abs(ort_logits(out, x.numpy()) - expected)) <= 1e-4
    meta = served_metadata(out)
    assert meta[md.WEIGHTS] == "checkpoint"
    assert len(meta[md.WEIGHTS_SHA256]) == 64


def test_checkpoint_with_legacy_key_names(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """Old DenseNet files say 'norm.1' where torchvision now says 'norm1', and predate
    BatchNorm's num_batches_tracked."""
    state = torch.load(tiny_checkpoint, weights_only=True)
    current = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    legacy = {
        k.replace("norm1", "norm.1").replace("conv2", "conv.2") if "denselayer" in k else k: v
        for k, v in current.items()
    }
    assert legacy.keys() != current.keys()
    assert fix_legacy_keys(legacy).keys() == current.keys()
    legacy_path = tmp_path / "legacy.pth"
    torch.save({"state_dict": legacy}, legacy_path)
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    assert (
        run_cli("export", "--arch", TINY_ARCH, "--checkpoint", tiny_checkpoint, "-o", a).returncode
        == 0
    )
    result = run_cli("export", "--arch", TINY_ARCH, "--checkpoint", legacy_path, "-o", b)
    assert result.returncode == 0, result.stderr
    x = np.ones((1, 3, 224, 224), np.float32)
    assert np.array_equal(ort_logits(a, x), ort_logits(b, x))


def test_failed_download_exits_nonzero_with_offline_advice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The download goes through a proxy on a closed loopback port: no network touched."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    for name in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "never.onnx"
    result = run_cli("export", "--arch", "densenet121", "--weights", "imagenet", "-o", out)
    assert result.returncode == 1
    assert "could not download the ImageNet weights" in result.stderr
    assert "--weights random" in result.stderr
    assert "--checkpoint" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_fp16_export(tmp_path: Path) -> None:
    """float16 inside, float32 at the edges, labelled fp16, within the relative tolerance."""
    out = tmp_path / "tiny-fp16.onnx"
    args = ["export", "--arch", TINY_ARCH, "--weights", "random", "--seed", "5"]
    result = run_cli(*args, "--precision", "fp16", "-o", out)
    assert result.returncode == 0, result.stderr
    assert "ONNX Runtime fp16| / max |logit|" in result.stdout
    assert "(tolerance 0.01)" in result.stdout
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        f"exported {TINY_ARCH} to {out}",
        "  weights: random, untrained (seed 5): its predictions mean nothing",
        "  precision: fp16",
    ]
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    weights = [i for i in model.graph.initializer if len(i.dims) == 4]  # conv kernels
    assert weights
    assert all(w.data_type == onnx.TensorProto.FLOAT16 for w in weights)
    meta = served_metadata(out)
    assert meta[md.PRECISION] == "fp16"
    assert "onnxconverter_common" in json.loads(meta[md.EXPORTED_WITH])

    torch.manual_seed(5)
    eager = build(TINY_ARCH).eval()
    x = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = eager(x).numpy()
    actual = ort_logits(out, x.numpy())
    assert actual.dtype == np.float32
    relative = np.max(np.abs(actual - expected)) / np.max(np.abs(expected))
    assert 0 < relative <= 1e-2  # rounded, but within the documented tolerance


def test_fp16_parity_failure_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "strict-fp16.onnx"
    args = ["export", "--arch", TINY_ARCH, "--weights", "random", "--precision", "fp16"]
    result = run_cli(*args, "--tolerance", "1e-6", "-o", out)
    assert result.returncode == 1
    assert "parity check failed" in result.stderr
    assert not out.exists()
    assert not list(tmp_path.glob("*.partial"))


def test_annotate_detects_fp16_weights(tmp_path: Path) -> None:
    half = tmp_path / "half.onnx"
    args = ["export", "--arch", TINY_ARCH, "--weights", "random", "--precision", "fp16"]
    assert run_cli(*args, "-o", half).returncode == 0
    bare = tmp_path / "bare.onnx"
    strip_metadata(half, bare)
    assert run_cli("annotate", bare).returncode == 0
    assert served_metadata(bare)[md.PRECISION] == "fp16"


def test_parity_failure_fails_the_export(tmp_path: Path) -> None:
    out = tmp_path / "strict.onnx"
    result = run_cli(
        "export", "--arch", TINY_ARCH, "--weights", "random", "--tolerance", "1e-12", "-o", out
    )
    assert result.returncode == 1
    assert "parity check failed" in result.stderr
    assert not out.exists()
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["export", "--arch", "resnet50"], 2, "invalid choice"),
        (["export", "--weights", "imagenet", "--checkpoint", "x.pth"], 2, "not allowed with"),
        (["export", "--weights", "imagenet", "--seed", "1"], 1, "--seed only applies"),
        (["export", "--arch", TINY_ARCH, "--checkpoint", "/nonexistent.pth"], 1, "does not exist"),
        (
            ["export", "--arch", TINY_ARCH, "--weights", "random", "--labels", "l.txt"],
            1,
            "--labels only applies",
        ),
        (["export", "--arch", TINY_ARCH, "--weights", "imagenet"], 1, "no pretrained weights"),
        (["export", "--arch", TINY_ARCH, "--weights", "random", "--opset", "11"], 1, "too old"),
        (["export", "--arch", TINY_ARCH, "--precision", "int8"], 2, "invalid choice"),
        (["annotate", "/nonexistent.onnx", "--crop-size", "224"], 1, "does not exist"),
        (["annotate", "m.onnx", "--crop-size", "-3"], 1, "must be positive"),
        (["bogus"], 2, "invalid choice"),
    ],
)
def test_bad_arguments_give_clear_errors(args: list[str], code: int, message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_checkpoint_that_is_not_a_state_dict(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    result = run_cli("export", "--arch", TINY_ARCH, "--checkpoint", bad)
    assert result.returncode == 1
    assert "not a readable PyTorch file" in result.stderr
    wrong = tmp_path / "wrong.pth"
    torch.save(build("densenet121").state_dict(), wrong)
    result = run_cli("export", "--arch", TINY_ARCH, "--checkpoint", wrong)
    assert result.returncode == 1
    assert "does not fit densenet-tiny" in result.stderr


def strip_metadata(source: Path, target: Path) -> None:
    model = onnx.load(str(source))
    del model.metadata_props[:]
    onnx.save(model, str(target))


def test_annotate_a_model_without_metadata(tmp_path: Path, tiny_random_model: Path) -> None:
    bare = tmp_path / "bare.onnx"
    strip_metadata(tiny_random_model, bare)
    assert served_metadata(bare) == {}
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"thing {i}\n" for i in range(1000)), encoding="utf-8")
    result = run_cli(
        "annotate",
        bare,
        "--labels",
        labels,
        "--resize-size",
        "232",
        "--interpolation",
        "bicubic",
        "--mean",
        "0.5",
        "0.5",
        "0.5",
    )
    assert result.returncode == 0, result.stderr
    meta = served_metadata(bare)
    assert json.loads(meta[md.LABELS])[999] == "thing 999"
    assert meta[md.RESIZE_SIZE] == "232"
    assert meta[md.INTERPOLATION] == "bicubic"
    assert json.loads(meta[md.MEAN]) == [0.5, 0.5, 0.5]
    assert meta[md.CROP_SIZE] == "224"  # filled with the ImageNet default
    assert json.loads(meta[md.STD]) == [0.229, 0.224, 0.225]
    assert meta[md.PRECISION] == "fp32"  # read from the graph: float32 weights
    inspect = run_cli("inspect", bare)
    assert inspect.returncode == 0
    assert '"labels": "<1000 names>"' in inspect.stdout


def test_annotate_rejects_label_count_mismatch(tmp_path: Path, tiny_random_model: Path) -> None:
    bare = tmp_path / "bare.onnx"
    strip_metadata(tiny_random_model, bare)
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n", encoding="utf-8")
    result = run_cli("annotate", bare, "--labels", labels)
    assert result.returncode == 1
    assert "labels file has 2 names but the model outputs 1000" in result.stderr
    assert served_metadata(bare) == {}


def test_annotate_rejects_crop_that_does_not_fit(tmp_path: Path, tiny_random_model: Path) -> None:
    out = tmp_path / "out.onnx"
    result = run_cli("annotate", tiny_random_model, "--crop-size", "300", "-o", out)
    assert result.returncode == 1
    assert "does not match the model's input" in result.stderr


def test_annotate_rejects_non_onnx(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00garbage" * 10)
    result = run_cli("annotate", junk, "--crop-size", "224")
    assert result.returncode == 1
    assert "not a readable ONNX model" in result.stderr
