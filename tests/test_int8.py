"""int8: `model_export quantize` on the tiny DenseNet, the choice and refusals of
DENSENET_PRECISION=int8, the OpenVINO int8 engine, and int8 served over HTTP and in a real
process. Machines this one is not are described by `Hardware` values; what needs the
instructions themselves (VNNI or AMX) skips on a CPU without them, saying so.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from app.errors import ModelLoadError
from app.precision import (
    CPU,
    CUDA,
    EngineChoice,
    Hardware,
    choose,
    cpu_flags,
    detect_hardware,
    served_precision,
)
from app.runtimes.onnxruntime import OnnxRuntimeEngine
from app.runtimes.openvino import OpenVinoEngine
from model_export.errors import ExportError
from model_export.photos import bundled_photo_paths
from model_export.quantize import QUANTIZATION, check_agreement
from model_export.runtimes import read_metadata
from tests.agreement import photo_jpegs, probabilities
from tests.conftest import run_cli, serve, settings_for
from tests.server import running, startup_refusal

EPYC = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16")
AVX2 = ("avx2", "fma")
CAPABILITIES = ("WINOGRAD", "FP32", "INT8", "BIN", "EXPORT_IMPORT")
VNNI_CPU = Hardware((CPU,), CAPABILITIES, None, EPYC)
VNNI_GPU = Hardware((CUDA, CPU), CAPABILITIES, None, EPYC)
AVX2_CPU = Hardware((CPU,), CAPABILITIES, None, AVX2)
UNREADABLE_FLAGS = Hardware((CPU,), CAPABILITIES, None, None)
NO_OPENVINO = Hardware((CPU,), None, "the openvino package is not installed", EPYC)
INT8 = EngineChoice("openvino", "int8", ("CPU",), "as requested")
FP32 = EngineChoice("onnxruntime", "fp32", (CPU,), "as requested")

needs_int8 = pytest.mark.skipif(
    not detect_hardware("int8").native_int8,
    reason="this CPU has no int8 dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX)",
)


@pytest.fixture(scope="session")
def tiny_int8_model(tiny_model: Path) -> Path:
    path = tiny_model.with_name("tiny-int8.onnx")
    result = run_cli(
        "quantize", tiny_model, "-o", path, "--calibration-count", "24", "--check-count", "32"
    )
    assert result.returncode == 0, result.stderr
    assert "against fp32 on 32 other inputs" in result.stdout
    return path


def test_quantize_writes_int8_with_the_metadata_carried_over(
    tiny_model: Path, tiny_int8_model: Path
) -> None:
    source, quantized = read_metadata(tiny_model), read_metadata(tiny_int8_model)
    assert quantized.pop("precision") == "int8"
    assert source.pop("precision") == "fp32"
    info = json.loads(quantized.pop(QUANTIZATION))
    assert quantized == source  # labels, recipe, arch, weights: all as exported
    assert info["calibration_size"] == 24
    assert info["format"] == "onnx qdq"
    assert f"24 inputs from {len(bundled_photo_paths())} bundled photos" in info["calibration"]
    assert info["source"] == tiny_model.name
    assert tiny_int8_model.stat().st_size < tiny_model.stat().st_size


def test_quantize_refuses_what_is_not_an_fp32_export(tmp_path: Path, tiny_int8_model: Path) -> None:
    out = tmp_path / "again.onnx"
    result = run_cli("quantize", tiny_int8_model, "-o", out, "--check-count", "0")
    assert result.returncode == 1
    assert "is stored in int8; quantize the fp32 export" in result.stderr
    assert not out.exists()
    missing = run_cli("quantize", tmp_path / "none.onnx", "-o", out)
    assert missing.returncode == 1
    assert "error:" in missing.stderr


def test_the_agreement_gate_counts_only_inputs_where_fp32_is_sure() -> None:
    sure = {"confident_inputs": 50, "top1_agreement_confident": 0.98}
    with pytest.raises(ExportError, match=r"98.00% of 50 inputs, below --min-agreement 99.00%"):
        check_agreement(sure, 0.99)
    check_agreement(sure, 0.98)
    check_agreement({"confident_inputs": 0, "top1_agreement_confident": 1.0}, 1.0)


@pytest.mark.parametrize(
    ("hardware", "providers", "message"),
    [
        (AVX2_CPU, None, "no int8 dot-product .*flags list none of them.* use fp32"),
        (UNREADABLE_FLAGS, None, "flags cannot be read"),
        (NO_OPENVINO, None, "int8 needs the OpenVINO runtime"),
        (VNNI_GPU, [CUDA, CPU], "asks for CUDA: use fp16"),
    ],
)
def test_int8_is_refused_where_it_would_be_emulated(
    hardware: Hardware, providers: list[str] | None, message: str
) -> None:
    with pytest.raises(ModelLoadError, match=message):
        choose("int8", hardware, providers)


def test_int8_is_chosen_only_when_asked_for() -> None:
    choice = choose("int8", VNNI_CPU, None)
    assert (choice.runtime, choice.precision) == ("openvino", "int8")
    assert choose("auto", VNNI_CPU, None).precision == "fp32"  # never int8 on its own
    assert served_precision(choice, "int8") == "int8"
    with pytest.raises(ModelLoadError, match=r"stored in fp32 .*model_export quantize"):
        served_precision(choice, "fp32")
    for other in (FP32, choose("auto", VNNI_CPU, None)):
        with pytest.raises(ModelLoadError, match=r"is an int8 export.*DENSENET_PRECISION=int8"):
            served_precision(other, "int8")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_vnni\n\nflags : other\n")
    assert cpu_flags(cpuinfo) == ("fpu", "avx2", "avx512_vnni")
    assert cpu_flags(tmp_path / "missing") is None


@needs_int8
def test_int8_engine_runs_its_convolutions_in_int8_and_agrees_with_fp32(
    tiny_model: Path, tiny_int8_model: Path
) -> None:
    engine = OpenVinoEngine(tiny_int8_model, INT8, threads=1)
    assert engine.precision == "int8"
    int8, weighted = (int(n) for n in engine.compiled.split()[:3:2])
    assert int8 == weighted > 0  # every convolution and the classifier, none left in fp32
    batch = np.random.default_rng(0).normal(size=(4, 3, 224, 224)).astype(np.float32)
    exact = OnnxRuntimeEngine(tiny_model, FP32, intra_op_threads=1).run(batch)
    logits = engine.run(batch)
    assert logits.shape == exact.shape == (4, 1000)
    assert not np.array_equal(logits, exact)  # computed differently ...
    assert np.abs(logits - exact).max() < 0.25 * np.abs(exact).max()  # ... and close


@needs_int8
def test_an_fp32_file_is_refused_by_the_int8_engine(tiny_model: Path) -> None:
    with pytest.raises(ModelLoadError, match="stored in fp32"):
        OpenVinoEngine(tiny_model, INT8, threads=1)


@needs_int8
async def test_int8_over_http_agrees_with_fp32_on_real_photos(
    tiny_model: Path, tiny_int8_model: Path
) -> None:
    """Agreement bounds on the tiny model: random weights leave near-ties, so not equality."""
    photos = photo_jpegs()
    exact = await probabilities("fp32", tiny_model, photos)
    int8 = await probabilities("int8", tiny_int8_model, photos)
    assert np.mean(exact.argmax(axis=1) == int8.argmax(axis=1)) >= 0.75
    top5 = [
        len(set(a[-5:]) & set(b[-5:])) / 5
        for a, b in zip(exact.argsort(), int8.argsort(), strict=True)
    ]
    assert np.mean(top5) >= 0.6
    assert 0 < np.abs(exact - int8).max() < 0.01


@needs_int8
async def test_int8_model_description_says_what_it_serves(tiny_int8_model: Path) -> None:
    async with serve(settings_for(tiny_int8_model, precision="int8")) as (_, client):
        model = (await client.get("/model")).json()
        assert (model["precision"], model["stored_precision"], model["runtime"]) == (
            "int8",
            "int8",
            "openvino",
        )
        metrics = (await client.get("/metrics")).text
        assert 'precision="int8"' in metrics


@pytest.mark.slow
@needs_int8
def test_int8_process_logs_what_it_compiled(tiny_int8_model: Path) -> None:
    import httpx

    with running(tiny_int8_model, precision="int8") as (process, url):
        assert httpx.get(f"{url}/model", timeout=10).json()["precision"] == "int8"
        output = process.output()
    assert "precision int8: openvino on CPU (as requested)" in output
    compiled = re.search(r"OpenVINO compiled tiny-int8.onnx for int8: (\d+) of (\d+) conv", output)
    assert compiled, output
    assert compiled[1] == compiled[2]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("precision", "fixture", "message"),
    [
        ("fp32", "tiny_int8_model", "is an int8 export, which DENSENET_PRECISION=fp32"),
        ("auto", "tiny_int8_model", "is an int8 export, which DENSENET_PRECISION=auto"),
        ("int8", "tiny_model", "DENSENET_PRECISION=int8 serves int8 exports"),
    ],
)
def test_a_mismatched_file_stops_startup_with_one_line(
    precision: str, fixture: str, message: str, request: pytest.FixtureRequest
) -> None:
    if precision == "int8" and not detect_hardware("int8").native_int8:
        message = "no int8 dot-product instructions"  # refused before any file is read
    assert message in startup_refusal(request.getfixturevalue(fixture), precision=precision)
