"""Which runtime serves the models, and in which numeric precision.

`choose` turns the `DENSENET_PRECISION` setting and what the machine offers into one
`EngineChoice` for the whole service, before any model loads; `served_precision` then checks
each model file against it. Both are pure: the hardware comes in as a `Hardware` value, so
tests can describe machines this one is not. A precision that cannot be served natively is
refused with a `ModelLoadError` that says why (start-up prints it as one line and exits 1):

- fp32: ONNX Runtime on the providers configured; the file must be stored in fp32.
- bf16: the OpenVINO runtime on the CPU, computing the fp32 file in bfloat16; only where its
  CPU plugin lists BF16 in OPTIMIZATION_CAPABILITIES (AVX512-BF16 or AMX), never emulated.
- fp16: ONNX Runtime's CUDA provider with an fp16 export; a CPU would only emulate it.
- int8: the OpenVINO runtime on the CPU, serving an int8 export (`model_export quantize`);
  only where the CPU has int8 dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX-INT8).
- auto: fp16 or fp32 as the file is stored on a GPU; else bf16 where native; else fp32.
  Never int8: it changes answers, so the operator opts in after reading its agreement.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn

from app.errors import ModelLoadError

log = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16", "fp16", "int8"]
Requested = Literal["fp32", "bf16", "fp16", "int8", "auto"]
Runtime = Literal["onnxruntime", "openvino"]
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
FP16_EXPORT = "python -m model_export export --precision fp16"
INT8_EXPORT = "python -m model_export quantize MODEL.onnx -o MODEL-int8.onnx"
# /proc/cpuinfo flags of the instructions that compute int8 dot products natively; without
# them OpenVINO still runs int8 (it lists INT8 on any AVX2 CPU), but emulated and slower.
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@dataclass(frozen=True)
class Hardware:
    """What this machine offers: ONNX Runtime's providers and OpenVINO's CPU capabilities."""

    onnxruntime_providers: tuple[str, ...]
    # OpenVINO's OPTIMIZATION_CAPABILITIES for the CPU (e.g. FP32, BF16, INT8); None when the
    # openvino package is missing or was not asked (fp32 and fp16 never need it).
    cpu_capabilities: tuple[str, ...] | None = None
    openvino_problem: str | None = None  # why cpu_capabilities is None, for the refusal
    cpu_flags: tuple[str, ...] | None = None  # /proc/cpuinfo's; None where unreadable
    # Why onnxruntime-gpu's CUDA provider cannot run here (no driver, no device); None when
    # a device is present or the provider is not installed. It lists CUDA either way.
    cuda_problem: str | None = None

    @property
    def native_bf16(self) -> bool:
        return self.cpu_capabilities is not None and "BF16" in self.cpu_capabilities

    @property
    def native_int8(self) -> bool:
        flags = self.cpu_flags or ()
        listed = self.cpu_capabilities is not None and "INT8" in self.cpu_capabilities
        return listed and any(flag in flags for flag in INT8_FLAGS)


@dataclass(frozen=True)
class EngineChoice:
    """The runtime and precision every model of this service runs with."""

    runtime: Runtime
    precision: Precision | None  # None: as each file is stored (auto on a GPU)
    providers: tuple[str, ...]  # ONNX Runtime's providers; ("CPU",) for OpenVINO
    reason: str  # one phrase for the start-up log


def resolve_providers(
    requested: list[str] | None, available: tuple[str, ...], cuda_problem: str | None = None
) -> list[str]:
    """ONNX Runtime providers: the requested ones if all are there, else CUDA when usable
    (`cuda_problem`: why the CUDA provider that `available` lists has no device)."""
    if cuda_problem is not None:
        if requested is not None and CUDA in requested:
            raise ModelLoadError(
                f"DENSENET_PROVIDERS asks for {CUDA}, but there is no CUDA device: "
                f"{cuda_problem}; run with a GPU, or set DENSENET_PROVIDERS=auto to serve "
                "on the CPU"
            )
        available = tuple(p for p in available if p != CUDA)
    if requested is None:
        return [CUDA, CPU] if CUDA in available else [CPU]
    missing = [p for p in requested if p not in available]
    if missing:
        raise ModelLoadError(
            f"execution provider(s) {missing} are not available; "
            f"this onnxruntime offers {list(available)}"
        )
    return requested


def choose(requested: Requested, hardware: Hardware, providers: list[str] | None) -> EngineChoice:
    """The engine for `DENSENET_PRECISION=requested`; ModelLoadError when it is not native."""
    ort_providers = tuple(
        resolve_providers(providers, hardware.onnxruntime_providers, hardware.cuda_problem)
    )
    gpu = CUDA in ort_providers
    # onnxruntime-gpu without a device: say so in the start-up line, and what is done.
    fallback = (
        f"; no CUDA device ({hardware.cuda_problem}): serving on the CPU"
        if hardware.cuda_problem is not None
        else ""
    )
    if requested == "fp32":
        return EngineChoice("onnxruntime", "fp32", ort_providers, f"as requested{fallback}")
    if requested == "fp16":
        if not gpu:
            why = (
                f"there is no CUDA device: {hardware.cuda_problem}"
                if hardware.cuda_problem is not None
                else f"this onnxruntime offers {', '.join(hardware.onnxruntime_providers)}"
            )
            raise ModelLoadError(
                f"DENSENET_PRECISION=fp16 needs an NVIDIA GPU through onnxruntime-gpu's {CUDA} "
                f"({why}{'' if providers is None else '; DENSENET_PROVIDERS leaves it out'}); "
                "a CPU only emulates fp16: use fp32, or bf16 on a CPU that has it"
            )
        return EngineChoice("onnxruntime", "fp16", ort_providers, "as requested")
    if requested in ("bf16", "int8"):
        return _openvino_choice(requested, hardware, providers)
    if gpu:
        return EngineChoice("onnxruntime", None, ort_providers, "auto: GPU, as each file stores")
    if hardware.native_bf16 and ort_providers == (CPU,):
        return EngineChoice("openvino", "bf16", ("CPU",), "auto: the CPU has native BF16")
    why = hardware.openvino_problem or "the CPU has no native BF16"
    return EngineChoice("onnxruntime", "fp32", ort_providers, f"auto: {why}{fallback}")


def _openvino_choice(
    requested: Literal["bf16", "int8"], hardware: Hardware, providers: list[str] | None
) -> EngineChoice:
    """bf16 and int8 run on the CPU through OpenVINO, only where the CPU computes them natively."""
    if providers is not None and CUDA in providers:
        raise ModelLoadError(
            f"DENSENET_PRECISION={requested} runs on the CPU (OpenVINO) but DENSENET_PROVIDERS "
            "asks for CUDA: use fp16 on a GPU"
        )
    if hardware.cpu_capabilities is None:
        raise ModelLoadError(
            f"DENSENET_PRECISION={requested} needs the OpenVINO runtime: "
            f"{hardware.openvino_problem}"
        )
    if requested == "bf16" and not hardware.native_bf16:
        raise ModelLoadError(
            "DENSENET_PRECISION=bf16: this CPU has no native bf16 (OpenVINO lists "
            f"{', '.join(hardware.cpu_capabilities)}; it needs AVX512-BF16 or AMX), and an "
            "emulated bf16 is slower than fp32: use fp32"
        )
    if requested == "int8" and not hardware.native_int8:
        flags = "cannot be read" if hardware.cpu_flags is None else "list none of them"
        raise ModelLoadError(
            "DENSENET_PRECISION=int8: this CPU has no int8 dot-product instructions "
            f"({', '.join(INT8_FLAGS)}; its flags {flags}), so int8 would only be emulated: "
            "use fp32, or bf16 on a CPU that has it"
        )
    return EngineChoice("openvino", requested, ("CPU",), "as requested")


def served_precision(choice: EngineChoice, stored: str) -> Precision:
    """The precision a file stored in `stored` is served in, or ModelLoadError."""
    if stored not in ("fp32", "fp16", "int8"):
        raise ModelLoadError(
            f"model metadata says precision '{stored}'; expected fp32, fp16 or int8"
        )
    if (stored == "int8") != (choice.precision == "int8"):
        _refuse_int8_mismatch(choice, stored)
    if stored == "int8":
        return "int8"
    if choice.precision is None:  # auto on a GPU: fp16 files in fp16, fp32 files in fp32
        return "fp16" if stored == "fp16" else "fp32"
    if choice.precision == "fp16" and stored != "fp16":
        raise ModelLoadError(
            f"DENSENET_PRECISION=fp16 serves fp16 files; this one is stored in {stored} "
            f"(make one with `{FP16_EXPORT}`)"
        )
    if choice.precision != "fp16" and stored == "fp16":
        raise ModelLoadError(
            f"the model is stored in fp16, which DENSENET_PRECISION={choice.precision} "
            "on this machine cannot serve: serve the fp32 export, or fp16 on a GPU"
        )
    return choice.precision


def _refuse_int8_mismatch(choice: EngineChoice, stored: str) -> NoReturn:
    if stored == "int8":
        requested = "auto" if choice.reason.startswith("auto") else choice.precision
        raise ModelLoadError(
            f"the model is an int8 export, which DENSENET_PRECISION={requested} does not "
            "serve: set DENSENET_PRECISION=int8 (after reading its agreement report), or "
            "serve the fp32 export"
        )
    raise ModelLoadError(
        f"DENSENET_PRECISION=int8 serves int8 exports; this one is stored in {stored} "
        f"(make one with `{INT8_EXPORT}`)"
    )


def detect_hardware(requested: Requested) -> Hardware:
    """This machine; OpenVINO is only imported where it may serve (bf16, int8 or auto)."""
    import onnxruntime as ort

    providers = tuple(ort.get_available_providers())
    cuda = cuda_device_problem() if CUDA in providers else None
    if requested not in ("bf16", "int8", "auto"):
        return Hardware(providers, cuda_problem=cuda)
    flags = cpu_flags()
    try:
        import openvino as ov
    except ImportError:
        problem = "the openvino package is not installed (pip install '.[openvino]')"
        return Hardware(providers, None, problem, flags, cuda)
    capabilities = tuple(str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    log.debug("OpenVINO CPU capabilities: %s", ", ".join(capabilities))
    return Hardware(providers, capabilities, None, flags, cuda)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, ...] | None:
    """The instruction-set flags of the first CPU in `cpuinfo`; None where unreadable."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return tuple(value.split())
    return None


def cuda_device_problem() -> str | None:
    """Why no CUDA device can be used, asked of the NVIDIA driver; None when one can.

    onnxruntime-gpu lists its CUDA provider whether or not a GPU is there; without one, a
    session asked for it fails or falls back to the CPU only when a model loads.
    """
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver: libcuda.so.1 is not found"
    status = driver.cuInit(0)
    if status != 0:  # 100: CUDA_ERROR_NO_DEVICE, e.g. CUDA_VISIBLE_DEVICES=""
        return f"the NVIDIA driver finds no usable device (cuInit error {status})"
    count = ctypes.c_int(0)
    if driver.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return "the NVIDIA driver reports no CUDA device"
    return None
