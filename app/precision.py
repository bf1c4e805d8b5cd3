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
- auto: fp16 or fp32 as the file is stored on a GPU; else bf16 where native; else fp32.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from app.errors import ModelLoadError

log = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16", "fp16"]
Requested = Literal["fp32", "bf16", "fp16", "auto"]
Runtime = Literal["onnxruntime", "openvino"]
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
FP16_EXPORT = "python -m model_export export --precision fp16"


@dataclass(frozen=True)
class Hardware:
    """What this machine offers: ONNX Runtime's providers and OpenVINO's CPU capabilities."""

    onnxruntime_providers: tuple[str, ...]
    # OpenVINO's OPTIMIZATION_CAPABILITIES for the CPU (e.g. FP32, BF16, INT8); None when the
    # openvino package is missing or was not asked (fp32 and fp16 never need it).
    cpu_capabilities: tuple[str, ...] | None = None
    openvino_problem: str | None = None  # why cpu_capabilities is None, for the refusal

    @property
    def native_bf16(self) -> bool:
        return self.cpu_capabilities is not None and "BF16" in self.cpu_capabilities


@dataclass(frozen=True)
class EngineChoice:
    """The runtime and precision every model of this service runs with."""

    runtime: Runtime
    precision: Precision | None  # None: as each file is stored (auto on a GPU)
    providers: tuple[str, ...]  # ONNX Runtime's providers; ("CPU",) for OpenVINO
    reason: str  # one phrase for the start-up log


def resolve_providers(requested: list[str] | None, available: tuple[str, ...]) -> list[str]:
    """ONNX Runtime providers: the requested ones if all are there, else CUDA when offered."""
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
    ort_providers = tuple(resolve_providers(providers, hardware.onnxruntime_providers))
    gpu = CUDA in ort_providers
    if requested == "fp32":
        return EngineChoice("onnxruntime", "fp32", ort_providers, "as requested")
    if requested == "fp16":
        if not gpu:
            raise ModelLoadError(
                "DENSENET_PRECISION=fp16 needs an NVIDIA GPU through onnxruntime-gpu's "
                f"{CUDA} (this onnxruntime offers {', '.join(hardware.onnxruntime_providers)}"
                f"{'' if providers is None else '; DENSENET_PROVIDERS leaves it out'}); "
                "a CPU only emulates fp16: use fp32, or bf16 on a CPU that has it"
            )
        return EngineChoice("onnxruntime", "fp16", ort_providers, "as requested")
    if requested == "bf16":
        if providers is not None and CUDA in providers:
            raise ModelLoadError(
                "DENSENET_PRECISION=bf16 runs on the CPU (OpenVINO) but DENSENET_PROVIDERS "
                "asks for CUDA: use fp16 on a GPU"
            )
        _require_native_bf16(hardware)
        return EngineChoice("openvino", "bf16", ("CPU",), "as requested")
    if gpu:
        return EngineChoice("onnxruntime", None, ort_providers, "auto: GPU, as each file stores")
    if hardware.native_bf16 and ort_providers == (CPU,):
        return EngineChoice("openvino", "bf16", ("CPU",), "auto: the CPU has native BF16")
    why = hardware.openvino_problem or "the CPU has no native BF16"
    return EngineChoice("onnxruntime", "fp32", ort_providers, f"auto: {why}")


def _require_native_bf16(hardware: Hardware) -> None:
    if hardware.cpu_capabilities is None:
        raise ModelLoadError(
            f"DENSENET_PRECISION=bf16 needs the OpenVINO runtime: {hardware.openvino_problem}"
        )
    if not hardware.native_bf16:
        raise ModelLoadError(
            "DENSENET_PRECISION=bf16: this CPU has no native bf16 (OpenVINO lists "
            f"{', '.join(hardware.cpu_capabilities)}; it needs AVX512-BF16 or AMX), and an "
            "emulated bf16 is slower than fp32: use fp32"
        )


def served_precision(choice: EngineChoice, stored: str) -> Precision:
    """The precision a file stored in `stored` is served in, or ModelLoadError."""
    if stored not in ("fp32", "fp16"):
        raise ModelLoadError(f"model metadata says precision '{stored}'; expected fp32 or fp16")
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


def detect_hardware(requested: Requested) -> Hardware:
    """This machine; OpenVINO is only imported when bf16 is possible (bf16 or auto)."""
    import onnxruntime as ort

    providers = tuple(ort.get_available_providers())
    if requested not in ("bf16", "auto"):
        return Hardware(providers)
    try:
        import openvino as ov
    except ImportError:
        problem = "the openvino package is not installed (pip install '.[openvino]')"
        return Hardware(providers, None, problem)
    capabilities = tuple(str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    log.debug("OpenVINO CPU capabilities: %s", ", ".join(capabilities))
    return Hardware(providers, capabilities)
