"""Post-training int8 quantization of an exported classifier (NNCF), with an agreement gate.

The calibration set is made the way `compare` makes its inputs: photos, varied by seeded
crops, flips and rescales, preprocessed by the model's own recipe. The bundled photos are
the default; a folder of the deployment's own images (`--images`) is what a real deployment
should calibrate on. Calibration never uses the unvaried photos, and the agreement check
that follows draws its inputs with another seed, so the gate is not measured on the
calibration set itself (the scenes are shared when both come from the bundled photos).

The output is an ONNX file with QuantizeLinear/DequantizeLinear pairs (QDQ), not OpenVINO
IR: it keeps the one contract between exporter and service (an .onnx file and its
metadata_props), the model repository finds it like any other version, and OpenVINO
compiles it to the same int8 kernels as its own IR (bench/results/int8-formats.md).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from model_export import metadata as md
from model_export.errors import ExportError

QUANTIZATION = "quantization"  # metadata key: JSON describing how the file was quantized
PRESETS = ("performance", "mixed")


@dataclass(frozen=True)
class Calibration:
    tensors: list[np.ndarray]  # float32 [1, 3, H, W] each
    description: str


def calibration_set(
    model: Path, paths: list[Path], source: str, count: int, seed: int
) -> Calibration:
    """`count` varied inputs (never the unvaried photos), preprocessed by `model`'s recipe."""
    from model_export.photos import preprocess, recipe_of, varied_inputs  # imports torch

    if count < 1:
        raise ExportError("--calibration-count must be positive")
    recipe = recipe_of(read_props(model))
    varied = list(varied_inputs(paths, count + len(paths), seed))[len(paths) :]
    tensors = [preprocess(image, recipe)[None] for _, image in varied]
    description = (
        f"{count} inputs from {len(paths)} {source} (seeded crops, flips and rescales, "
        f"seed {seed}), preprocessed by the model's recipe"
    )
    return Calibration(tensors, description)


def read_props(path: Path) -> dict[str, str]:
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ExportError(f"{path} is not a readable ONNX model: {exc}") from exc
    return {entry.key: entry.value for entry in proto.metadata_props}


def quantize(source: Path, output: Path, calibration: Calibration, preset: str) -> dict[str, Any]:
    """Write the int8 (QDQ) version of `source` to `output`; what it did, for the metadata."""
    from model_export.export import set_metadata  # imports torch

    props = read_props(source)
    stored = props.get(md.PRECISION, "fp32")
    if stored != "fp32":
        raise ExportError(f"{source} is stored in {stored}; quantize the fp32 export")
    try:
        import nncf
    except ImportError as exc:
        raise ExportError("quantizing needs NNCF: pip install '.[export,quantize]'") from exc
    model = onnx.load(str(source))
    input_name = model.graph.input[0].name
    dataset = nncf.Dataset(calibration.tensors, lambda tensor: {input_name: tensor})
    started = time.perf_counter()
    quantized = nncf.quantize(
        model,
        dataset,
        preset=nncf.QuantizationPreset(preset),
        subset_size=len(calibration.tensors),
    )
    info = {
        "tool": f"nncf {nncf.__version__}",
        "method": "post-training min-max, fast bias correction",
        "preset": preset,
        "format": "onnx qdq",
        "calibration": calibration.description,
        "calibration_size": len(calibration.tensors),
        "source": source.name,
        "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    set_metadata(quantized, {**props, md.PRECISION: "int8", QUANTIZATION: json.dumps(info)})
    output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(quantized, str(output))
    return info


def check_agreement(agreement: dict[str, Any], minimum: float) -> None:
    """ExportError when int8 changes too many answers where fp32 is sure (inputs where
    fp32 is unsure are near-ties that any rounding flips; none at all passes)."""
    sure, share = agreement["confident_inputs"], agreement["top1_agreement_confident"]
    if sure and share < minimum:
        raise ExportError(
            f"top-1 agreement where fp32 is >= 50% sure is {share:.2%} of {sure} inputs, below "
            f"--min-agreement {minimum:.2%}: nothing written (try --preset mixed, or calibrate "
            "on more or on your own --images)"
        )


def add_parser(commands: Any) -> None:
    q = commands.add_parser(
        "quantize",
        help="post-training int8 quantization (NNCF) with an agreement check against fp32",
        description="Quantize an fp32 export to int8 (an ONNX file with QuantizeLinear/"
        "DequantizeLinear pairs, served by DENSENET_PRECISION=int8), then compare it with the "
        "fp32 file on other inputs. Exits 1, writing nothing, if top-1 agreement where fp32 "
        "is at least 50%% sure falls below --min-agreement.",
    )
    q.add_argument("model", type=Path, help="the fp32 .onnx export")
    q.add_argument("--output", "-o", type=Path, help="default: MODEL-int8.onnx beside MODEL")
    q.add_argument(
        "--images", type=Path, help="calibrate on this folder of photos (default: bundled ones)"
    )
    q.add_argument("--calibration-count", type=int, default=300, help="default 300")
    q.add_argument("--seed", type=int, default=1, help="seed of the calibration variations")
    q.add_argument("--preset", choices=PRESETS, default="performance")
    q.add_argument("--check-count", type=int, default=256, help="agreement inputs; 0: no check")
    q.add_argument(
        "--min-agreement",
        type=float,
        default=0.99,
        help="least top-1 agreement where fp32 is >= 50%% sure (default 0.99)",
    )


def run(args: Any) -> int:
    from model_export import compare, photos, runtimes

    if not 0 <= args.min_agreement <= 1 or args.check_count < 0:
        raise ExportError("--min-agreement is a share (0-1) and --check-count not negative")
    if args.images is None:
        paths, source = photos.bundled_photo_paths(), "bundled photos"
    else:
        paths, source = photos.directory_photo_paths(args.images), f"images in {args.images}"
    output = args.output or args.model.with_name(f"{args.model.stem}-int8.onnx")
    calibration = calibration_set(args.model, paths, source, args.calibration_count, args.seed)
    staged = output.with_name(f".{output.name}.partial")
    try:
        info = quantize(args.model, staged, calibration, args.preset)
        print(f"quantized {args.model} to int8 in {info['seconds']} s ({info['calibration']})")
        if args.check_count:
            reference = runtimes.open_runner(args.model, "onnxruntime")
            candidate = runtimes.open_runner(staged, "openvino", "int8")
            seed = args.seed + 1000  # not the calibration's variations
            result = compare.compare(
                reference, candidate, args.model, paths, args.check_count, seed
            )
            print(f"  against fp32 on {args.check_count} other inputs (seed {seed}):")
            print("  " + compare.format_agreement(result["agreement"]).replace("\n", "\n  "))
            check_agreement(result["agreement"], args.min_agreement)
        staged.replace(output)
    finally:
        staged.unlink(missing_ok=True)
    print(f"  file: {output} ({output.stat().st_size / 1e6:.1f} MB), precision int8")
    return 0
