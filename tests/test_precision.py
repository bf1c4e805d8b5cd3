"""Precision selection: the choice for each setting and machine, the real engines behind it,
the precision served in /models and the metrics, and refusals at start-up.

Machines this one is not (a GPU, a CPU without BF16, no OpenVINO) are described by injecting
a `Hardware` value: the CPU cannot be changed, but what the service reads from it can.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from app.errors import ModelLoadError
from app.precision import (
    CPU,
    CUDA,
    EngineChoice,
    Hardware,
    choose,
    detect_hardware,
    served_precision,
)
from app.repository import default_engine_loader
from app.runtimes.onnxruntime import BoundBuffers, OnnxRuntimeEngine
from app.runtimes.openvino import OpenVinoEngine
from model_export.models import TINY_ARCH
from tests.agreement import photo_jpegs, probabilities
from tests.conftest import run_cli, serve, settings_for
from tests.server import running, startup_refusal

SAPPHIRE_RAPIDS = ("FP32", "BF16", "FP16", "INT8", "BIN", "EXPORT_IMPORT")  # AMX
SKYLAKE_SERVER = ("WINOGRAD", "FP32", "INT8", "BIN", "EXPORT_IMPORT")  # AVX-512, no BF16
CPU_ONLY = Hardware((CPU,), SKYLAKE_SERVER)
AMX_CPU = Hardware((CPU,), SAPPHIRE_RAPIDS)
GPU = Hardware((CUDA, CPU), SKYLAKE_SERVER)
NO_OPENVINO = Hardware((CPU,), None, "the openvino package is not installed")
BF16 = EngineChoice("openvino", "bf16", ("CPU",), "test")
FP32 = EngineChoice("onnxruntime", "fp32", (CPU,), "test")


def native_bf16_here() -> bool:
    return detect_hardware("bf16").native_bf16


needs_bf16 = pytest.mark.skipif(
    not native_bf16_here(), reason="this CPU has no native bf16 (AVX512-BF16 or AMX)"
)


@pytest.fixture(scope="session")
def tiny_fp16_model(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny-fp16.onnx"
    args: list[str | Path] = ["export", "--arch", TINY_ARCH, "--checkpoint", tiny_checkpoint]
    args += ["--precision", "fp16"]
    result = run_cli(*args, "-o", path)
    assert result.returncode == 0, result.stderr
    return path


@pytest.mark.parametrize(
    ("requested", "hardware", "providers", "expected"),
    [
        ("fp32", AMX_CPU, None, ("onnxruntime", "fp32", (CPU,))),
        ("fp32", GPU, None, ("onnxruntime", "fp32", (CUDA, CPU))),
        ("auto", AMX_CPU, None, ("openvino", "bf16", ("CPU",))),
        ("auto", CPU_ONLY, None, ("onnxruntime", "fp32", (CPU,))),
        ("auto", NO_OPENVINO, None, ("onnxruntime", "fp32", (CPU,))),
        ("auto", GPU, None, ("onnxruntime", None, (CUDA, CPU))),
        ("auto", Hardware((CUDA, CPU), SAPPHIRE_RAPIDS), [CPU], ("openvino", "bf16", ("CPU",))),
        ("bf16", AMX_CPU, None, ("openvino", "bf16", ("CPU",))),
        ("bf16", AMX_CPU, [CPU], ("openvino", "bf16", ("CPU",))),
        ("fp16", GPU, None, ("onnxruntime", "fp16", (CUDA, CPU))),
    ],
)
def test_choice_for_each_setting_and_machine(
    requested: str,
    hardware: Hardware,
    providers: list[str] | None,
    expected: tuple[str, str | None, tuple[str, ...]],
) -> None:
    choice = choose(requested, hardware, providers)  # type: ignore[arg-type]
    assert (choice.runtime, choice.precision, choice.providers) == expected


@pytest.mark.parametrize(
    ("requested", "hardware", "providers", "message"),
    [
        ("bf16", CPU_ONLY, None, "no native bf16 .*WINOGRAD, FP32.* use fp32"),
        ("bf16", NO_OPENVINO, None, "needs the OpenVINO runtime: the openvino package"),
        ("bf16", GPU, [CUDA, CPU], "asks for CUDA: use fp16"),
        ("fp16", AMX_CPU, None, "needs an NVIDIA GPU .*CPUExecutionProvider.*only emulates"),
        ("fp16", GPU, [CPU], "DENSENET_PROVIDERS leaves it out"),
        ("fp32", CPU_ONLY, [CUDA], r"\['CUDAExecutionProvider'\] are not available"),
    ],
)
def test_a_precision_the_hardware_lacks_is_refused(
    requested: str, hardware: Hardware, providers: list[str] | None, message: str
) -> None:
    with pytest.raises(ModelLoadError, match=message):
        choose(requested, hardware, providers)  # type: ignore[arg-type]


def test_served_precision_matches_the_file() -> None:
    auto_gpu = choose("auto", GPU, None)
    assert served_precision(auto_gpu, "fp16") == "fp16"
    assert served_precision(auto_gpu, "fp32") == "fp32"
    assert served_precision(BF16, "fp32") == "bf16"
    assert served_precision(choose("fp16", GPU, None), "fp16") == "fp16"
    with pytest.raises(ModelLoadError, match=r"fp16 serves fp16 files.*--precision fp16"):
        served_precision(choose("fp16", GPU, None), "fp32")
    for choice in (FP32, BF16, choose("auto", CPU_ONLY, None)):
        with pytest.raises(ModelLoadError, match="stored in fp16"):
            served_precision(choice, "fp16")
    with pytest.raises(ModelLoadError, match="expected fp32, fp16 or int8"):
        served_precision(FP32, "int4")


@needs_bf16
def test_bf16_engine_reads_the_same_model_and_computes_in_bf16(tiny_model: Path) -> None:
    exact = OnnxRuntimeEngine(tiny_model, FP32, intra_op_threads=1)
    bf16 = OpenVinoEngine(tiny_model, BF16, threads=1)
    assert (bf16.runtime, bf16.precision, bf16.providers) == ("openvino", "bf16", ["openvino:CPU"])
    assert bf16.spec == exact.spec  # labels, recipe, input name, from the same metadata
    batch = np.random.default_rng(0).standard_normal((3, 3, 224, 224), dtype=np.float32)
    first = bf16.run(batch)
    bf16.run(batch[:1] * 0)  # the output buffer is reused: `first` must be the caller's own
    reference = exact.run(batch)
    assert first.shape == (3, 1000)
    assert first.dtype == np.float32
    difference = np.abs(first - reference).max()
    assert 0 < difference < 0.05 * np.abs(reference).max()  # rounded, not another model


def test_device_buffers_give_the_session_results(tiny_model: Path) -> None:
    """The CUDA path's IOBinding code, run on the CPU: one buffer pair per batch shape."""
    session = ort.InferenceSession(str(tiny_model), providers=[CPU])
    bound = BoundBuffers(session, "cpu")
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((n, 3, 224, 224), dtype=np.float32) for n in (1, 3, 3)]
    outputs = [bound.run(batch) for batch in batches]
    for batch, output in zip(batches, outputs, strict=True):
        np.testing.assert_array_equal(output, session.run(None, {"input": batch})[0])
    assert not np.array_equal(outputs[1], outputs[2])  # the reused buffer did not alias


async def test_fp16_file_is_refused_where_fp16_is_not_native(tiny_fp16_model: Path) -> None:
    for precision in ("fp32", "auto"):
        settings = settings_for(tiny_fp16_model, precision=precision)
        with pytest.raises(ModelLoadError, match="stored in fp16"):
            default_engine_loader(settings, CPU_ONLY)(tiny_fp16_model)


@pytest.mark.parametrize(
    ("hardware", "precision", "runtime", "providers"),
    [(AMX_CPU, "bf16", "openvino", "openvino:CPU"), (CPU_ONLY, "fp32", "onnxruntime", CPU)],
    ids=["cpu_with_bf16", "cpu_without_bf16"],
)
@needs_bf16
async def test_auto_serves_what_the_hardware_does_natively(
    tiny_model: Path, hardware: Hardware, precision: str, runtime: str, providers: str
) -> None:
    settings = settings_for(tiny_model, precision="auto")
    async with serve(settings, engine_loader=default_engine_loader(settings, hardware)) as (
        _,
        client,
    ):
        info = (await client.get("/models")).json()["models"][0]
        assert (info["precision"], info["stored_precision"]) == (precision, "fp32")
        assert (info["runtime"], info["providers"]) == (runtime, [providers])
        assert (await client.get("/model")).json()["precision"] == precision
        metrics = (await client.get("/metrics")).text
        assert (
            'classifier_model_info{arch="densenet-tiny",model="densenet-tiny",'
            f'precision="{precision}",providers="{providers}",version="1",'
            'weights="checkpoint"} 1.0'
        ) in metrics


@needs_bf16
async def test_bf16_over_http_agrees_with_fp32_on_real_photos(tiny_model: Path) -> None:
    """Agreement, not equality: random weights leave near-ties that bf16 may flip."""
    photos = photo_jpegs()
    assert len(photos) >= 12
    exact = await probabilities("fp32", tiny_model, photos)
    bf16 = await probabilities("bf16", tiny_model, photos)
    agreement = np.mean(exact.argmax(axis=1) == bf16.argmax(axis=1))
    assert agreement >= 0.75, agreement
    difference = np.abs(exact - bf16).max()
    assert 0 < difference < 0.01  # computed differently, and close


@pytest.mark.slow
def test_unavailable_precision_stops_startup_with_one_line(tiny_model: Path) -> None:
    refusal = startup_refusal(tiny_model, precision="fp16")
    assert "DENSENET_PRECISION=fp16 needs an NVIDIA GPU" in refusal


@pytest.mark.slow
@needs_bf16
def test_bf16_process_logs_and_serves_bf16(tiny_model: Path) -> None:
    import httpx

    with running(tiny_model, precision="bf16") as (process, url):
        assert httpx.get(f"{url}/model", timeout=10).json()["precision"] == "bf16"
        output = process.output()
    assert "precision bf16: openvino on CPU (as requested)" in output
    assert "in bf16 on openvino (openvino:CPU)" in output


# onnxruntime-gpu lists CUDA on a machine without a GPU (the GPU image started in CI).
NO_DRIVER = "no NVIDIA driver: libcuda.so.1 is not found"
GPU_PACKAGE_NO_DEVICE = Hardware((CUDA, CPU), SKYLAKE_SERVER, cuda_problem=NO_DRIVER)


@pytest.mark.parametrize("requested", ["auto", "fp32"])
def test_without_a_cuda_device_the_choice_falls_back_and_says_so(requested: str) -> None:
    choice = choose(requested, GPU_PACKAGE_NO_DEVICE, None)  # type: ignore[arg-type]
    assert (choice.runtime, choice.precision, choice.providers) == ("onnxruntime", "fp32", (CPU,))
    assert choice.reason.endswith(f"; no CUDA device ({NO_DRIVER}): serving on the CPU")


@pytest.mark.parametrize(
    ("requested", "providers", "message"),
    [
        (
            "fp16",
            None,
            f"DENSENET_PRECISION=fp16 needs an NVIDIA GPU through onnxruntime-gpu's "
            f"{CUDA} (there is no CUDA device: {NO_DRIVER})",
        ),
        (
            "fp32",
            [CUDA, CPU],
            f"DENSENET_PROVIDERS asks for {CUDA}, but there is no CUDA "
            f"device: {NO_DRIVER}; run with a GPU, or set DENSENET_PROVIDERS=auto",
        ),
    ],
)
def test_without_a_cuda_device_a_setting_that_demands_it_is_refused(
    requested: str, providers: list[str] | None, message: str
) -> None:
    with pytest.raises(ModelLoadError) as refused:
        choose(requested, GPU_PACKAGE_NO_DEVICE, providers)  # type: ignore[arg-type]
    assert message in str(refused.value)


def test_the_driver_is_asked_for_a_device() -> None:
    import ctypes.util

    from app.precision import cuda_device_problem

    if ctypes.util.find_library("cuda"):
        pytest.skip("this machine has an NVIDIA driver")
    assert cuda_device_problem() == NO_DRIVER
