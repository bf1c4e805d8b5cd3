"""`python -m model_export compare`: agreement of two models on real, varied photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model_export.compare import agreement
from model_export.photos import bundled_photo_paths, varied_inputs
from tests.conftest import run_cli

COUNT = "16"  # enough to cover every bundled photo once and some variations


@pytest.fixture(scope="module")
def tiny_fp16_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fp16") / "tiny-fp16.onnx"
    args = ["export", "--arch", "densenet-tiny", "--weights", "random", "--seed", "0"]
    result = run_cli(*args, "--precision", "fp16", "-o", path)
    assert result.returncode == 0, result.stderr
    return path


def compare_json(tmp_path: Path, *args: str | Path) -> dict[str, object]:
    out = tmp_path / "report.json"
    result = run_cli("compare", *args, "--count", COUNT, "--json", out)
    assert result.returncode == 0, result.stderr
    assert "top-1 agreement" in result.stdout
    report: dict[str, object] = json.loads(out.read_text(encoding="utf-8"))
    return report


def test_identical_models_agree_completely(tmp_path: Path, tiny_random_model: Path) -> None:
    report = compare_json(tmp_path, tiny_random_model, tiny_random_model)
    a = report["agreement"]
    assert isinstance(a, dict)
    assert a["inputs"] == int(COUNT)
    assert (a["top1_agreement"], a["top5_overlap"]) == (1.0, 1.0)
    assert (a["max_probability_diff"], a["max_logit_diff"]) == (0.0, 0.0)
    assert a["disagreeing_inputs"] == []


def test_a_different_model_disagrees(
    tmp_path: Path, tiny_random_model: Path, tiny_model: Path
) -> None:
    report = compare_json(tmp_path, tiny_random_model, tiny_model)
    a = report["agreement"]
    assert isinstance(a, dict)
    assert a["top1_agreement"] < 1.0
    assert a["top5_overlap"] < 1.0
    assert a["max_logit_diff"] > 0.1
    assert len(a["disagreeing_inputs"]) == a["top1_disagreements"] > 0


def test_fp16_export_agrees_closely(
    tmp_path: Path, tiny_random_model: Path, tiny_fp16_model: Path
) -> None:
    report = compare_json(tmp_path, tiny_random_model, tiny_fp16_model)
    candidate, a = report["candidate"], report["agreement"]
    assert isinstance(candidate, dict)
    assert isinstance(a, dict)
    assert (candidate["file_precision"], candidate["compute_precision"]) == ("fp16", "fp16")
    assert 0 < a["max_logit_diff"] < 0.05 * a["reference_logit_std"]
    assert a["top5_overlap"] >= 0.9


def test_bf16_in_openvino(tmp_path: Path, tiny_random_model: Path) -> None:
    """bf16 where OpenVINO says the CPU computes it natively; a clear refusal elsewhere."""
    ov = pytest.importorskip("openvino")
    native = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    args = ["--candidate-runtime", "openvino", "--candidate-precision", "bf16"]
    if not native:
        result = run_cli("compare", tiny_random_model, tiny_random_model, *args)
        assert result.returncode == 1
        assert "no native bf16" in result.stderr
        return
    report = compare_json(tmp_path, tiny_random_model, tiny_random_model, *args)
    candidate, a = report["candidate"], report["agreement"]
    assert isinstance(candidate, dict)
    assert isinstance(a, dict)
    assert candidate["runtime"] == "openvino"
    assert candidate["inference_precision"] == "bf16"
    # bf16 keeps 8 significant bits: visibly different from fp32, but close.
    assert 0 < a["max_logit_diff"] < 0.2 * a["reference_logit_std"]


def test_openvino_fp32_matches_onnxruntime(tmp_path: Path, tiny_random_model: Path) -> None:
    """fp32 must be asked for explicitly: OpenVINO's default on AVX512-BF16/AMX is bf16."""
    pytest.importorskip("openvino")
    args = ["--candidate-runtime", "openvino", "--candidate-precision", "fp32"]
    report = compare_json(tmp_path, tiny_random_model, tiny_random_model, *args)
    a = report["agreement"]
    assert isinstance(a, dict)
    assert a["top1_agreement"] == 1.0
    assert a["max_logit_diff"] < 1e-4


def test_images_folder(tmp_path: Path, tiny_random_model: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for index, path in enumerate(bundled_photo_paths()[:3]):
        Image.open(path).convert("RGB").save(photos / f"{index}.png")
    (photos / "notes.txt").write_text("not an image", encoding="utf-8")
    report = compare_json(tmp_path, tiny_random_model, tiny_random_model, "--images", photos)
    assert report["photos"] == [str(photos / f"{i}.png") for i in range(3)]


def test_min_top1_fails_a_disagreeing_candidate(tiny_random_model: Path, tiny_model: Path) -> None:
    args = ["compare", tiny_random_model, tiny_model, "--count", "4", "--min-top1", "0.99"]
    result = run_cli(*args)
    assert result.returncode == 1
    assert "is below 99.00%" in result.stderr


def test_varied_inputs_are_seeded_and_varied() -> None:
    paths = bundled_photo_paths()[:2]
    first = [np.asarray(image) for _, image in varied_inputs(paths, 6, seed=1)]
    again = [np.asarray(image) for _, image in varied_inputs(paths, 6, seed=1)]
    other = [np.asarray(image) for _, image in varied_inputs(paths, 6, seed=2)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert first[0].shape != first[2].shape  # photo 0 unvaried, then a variation of it
    assert not all(a.shape == b.shape for a, b in zip(first[2:], other[2:], strict=True))


def test_agreement_figures_on_known_logits() -> None:
    reference = np.array([[5.0, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5]])
    candidate = np.array([[5.0, 4, 3, 2, 0, 1], [0, 1, 2, 3, 5, 4]])
    a = agreement(reference, candidate, ["a", "b"])
    assert a.top1_agreement == 0.5
    assert a.disagreeing_inputs == ["b"]
    assert a.top5_overlap == pytest.approx((4 / 5 + 5 / 5) / 2)
    assert a.max_logit_diff == 1.0
    assert a.confident_inputs == 2  # softmax of 5..0 puts 63% on the first class
    assert a.top1_agreement_confident == 0.5


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--candidate-precision", "bf16"], "onnxruntime computes in the precision"),
        (["--count", "0"], "must be positive"),
        (["--min-top1", "1.5"], "between 0 and 1"),
        (["--images", "/nonexistent"], "is not a directory"),
        (["--candidate-runtime", "tensorrt"], "invalid choice"),
    ],
)
def test_bad_arguments(tiny_random_model: Path, extra: list[str], message: str) -> None:
    result = run_cli("compare", tiny_random_model, tiny_random_model, *extra)
    assert result.returncode in (1, 2)
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_model_and_empty_folder(tmp_path: Path, tiny_random_model: Path) -> None:
    result = run_cli("compare", tiny_random_model, tmp_path / "none.onnx")
    assert result.returncode == 1
    assert "does not exist" in result.stderr
    result = run_cli("compare", tiny_random_model, tiny_random_model, "--images", tmp_path)
    assert result.returncode == 1
    assert "holds no images" in result.stderr
