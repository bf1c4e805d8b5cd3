"""`python -m model_export {export,annotate,inspect,compare,quantize}`: see the user guide."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from model_export import metadata as md
from model_export import quantize
from model_export.errors import ExportError


def _parser() -> argparse.ArgumentParser:
    from model_export.models import ARCHS
    from model_export.precision import FP16_RELATIVE_TOLERANCE, FP32_TOLERANCE, PRECISIONS

    parser = argparse.ArgumentParser(prog="python -m model_export", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    exp = commands.add_parser("export", help="export a torchvision DenseNet to ONNX")
    exp.add_argument("--arch", choices=ARCHS, default="densenet121")
    source = exp.add_mutually_exclusive_group()
    source.add_argument(
        "--weights",
        choices=("imagenet", "random"),
        default=None,
        help="imagenet (default): torchvision IMAGENET1K_V1, downloaded and "
        "cached by torch hub; random: seeded, untrained",
    )
    source.add_argument("--checkpoint", type=Path, help="a local torchvision-format state_dict")
    exp.add_argument("--seed", type=int, default=None, help="seed for --weights random")
    exp.add_argument("--labels", type=Path, help="class names, one a line (checkpoints only)")
    exp.add_argument("--output", "-o", type=Path, help="default: models/ARCH.onnx")
    exp.add_argument("--opset", type=int, default=17)
    exp.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32 (default) or fp16: float16 weights and activations, float32 input and "
        "output (for GPUs with tensor cores)",
    )
    exp.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="parity bound against PyTorch fp32. fp32: max absolute logit difference "
        f"(default {FP32_TOLERANCE:g}); fp16: max logit difference relative to the largest "
        f"|logit| (default {FP16_RELATIVE_TOLERANCE:g})",
    )

    ann = commands.add_parser("annotate", help="write serving metadata onto an ONNX classifier")
    ann.add_argument("model", type=Path)
    ann.add_argument("--labels", type=Path, help="class names, one a line")
    ann.add_argument("--resize-size", type=int)
    ann.add_argument("--crop-size", type=int)
    ann.add_argument("--interpolation", choices=md.INTERPOLATIONS)
    ann.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"))
    ann.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"))
    ann.add_argument("--output", "-o", type=Path, help="default: overwrite MODEL")

    ins = commands.add_parser("inspect", help="print a model's serving metadata as JSON")
    ins.add_argument("model", type=Path)
    _add_compare(commands)
    quantize.add_parser(commands)
    return parser


def _add_compare(commands: Any) -> None:
    from model_export.runtimes import COMPUTE_PRECISIONS, RUNTIMES

    cmp = commands.add_parser(
        "compare",
        help="top-1/top-5 agreement and largest differences of two models on real photos",
        description="Run REFERENCE and CANDIDATE (two files, or one file twice in another "
        "runtime or precision) on the same preprocessed photos and report how often they "
        "agree. Exits 1 if --min-top1 is given and not met.",
    )
    cmp.add_argument("reference", type=Path)
    cmp.add_argument("candidate", type=Path)
    for name in ("reference", "candidate"):
        cmp.add_argument(f"--{name}-runtime", choices=RUNTIMES, default="onnxruntime")
        cmp.add_argument(
            f"--{name}-precision",
            choices=COMPUTE_PRECISIONS,
            default=None,
            help="compute precision (default: as the file is stored; onnxruntime only "
            "computes that, openvino takes any the CPU supports natively)",
        )
    cmp.add_argument("--images", type=Path, help="a folder of photos (default: bundled ones)")
    cmp.add_argument("--count", type=int, default=256, help="inputs to compare (default 256)")
    cmp.add_argument("--seed", type=int, default=0, help="seed for crops, flips and scales")
    cmp.add_argument("--batch-size", type=int, default=8)
    cmp.add_argument("--threads", type=int, default=0, help="per runtime; 0: its default")
    cmp.add_argument("--min-top1", type=float, help="fail below this top-1 agreement (0-1)")
    cmp.add_argument("--json", type=Path, dest="json_out", help="also write the report here")


def _read_labels(path: Path | None) -> list[str] | None:
    if path is None:
        return None
    try:
        labels = md.read_labels_file(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"cannot read labels file {path}: {exc}") from exc
    if not labels or any(not label for label in labels):
        raise ExportError(f"labels file {path} is empty or has blank lines")
    return labels


def _run_export(args: argparse.Namespace) -> None:
    from model_export import models
    from model_export.export import describe_parity, export
    from model_export.precision import default_tolerance

    if args.seed is not None and args.weights != "random":
        raise ExportError("--seed only applies to --weights random")
    if args.labels is not None and args.checkpoint is None:
        raise ExportError("--labels only applies to --checkpoint (other weights carry their own)")
    if args.checkpoint is not None:
        model = models.load_checkpoint(args.arch, args.checkpoint, _read_labels(args.labels))
    elif args.weights == "random":
        model = models.load_random(args.arch, 0 if args.seed is None else args.seed)
    else:
        model = models.load_imagenet(args.arch)
    suffix = "" if args.precision == "fp32" else f"-{args.precision}"
    output = args.output or Path("models") / f"{args.arch}{suffix}.onnx"
    tolerance = default_tolerance(args.precision) if args.tolerance is None else args.tolerance
    report = export(model, output, args.opset, tolerance, args.precision)
    weights = {
        "random": f"random, untrained (seed {args.seed or 0}): its predictions mean nothing",
        "imagenet": f"ImageNet, {model.weights_source}",
        "checkpoint": f"the checkpoint {model.weights_source}",
    }[model.weights]
    print(
        f"exported {model.arch} to {report.path}\n"
        f"  weights: {weights}\n"
        f"  precision: {report.precision}\n"
        f"  parity: {describe_parity(report.precision, report.parity_error)} "
        f"(tolerance {tolerance:g})\n"
        f"  file: {report.file_bytes / 1e6:.1f} MB, parameters: {report.parameters:,}, "
        f"took {report.seconds:.1f} s"
    )


def _run_annotate(args: argparse.Namespace) -> None:
    from model_export.annotate import annotate

    overrides: dict[str, str] = {}
    if args.resize_size is not None:
        overrides[md.RESIZE_SIZE] = str(args.resize_size)
    if args.crop_size is not None:
        overrides[md.CROP_SIZE] = str(args.crop_size)
    if args.interpolation is not None:
        overrides[md.INTERPOLATION] = args.interpolation
    if args.mean is not None:
        overrides[md.MEAN] = json.dumps(args.mean)
    if args.std is not None:
        if any(s <= 0 for s in args.std):
            raise ExportError("--std values must be positive")
        overrides[md.STD] = json.dumps(args.std)
    for name in ("resize_size", "crop_size"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ExportError(f"--{name.replace('_', '-')} must be positive")
    if not args.model.is_file():
        raise ExportError(f"{args.model} does not exist")
    written = annotate(args.model, args.output or args.model, _read_labels(args.labels), overrides)
    shown = {
        k: (f"{len(json.loads(v))} names" if k == md.LABELS else v) for k, v in written.items()
    }
    print(f"wrote {json.dumps(shown)} to {args.output or args.model}")


def _run_inspect(args: argparse.Namespace) -> None:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"{args.model} is not a loadable ONNX model: {exc}") from exc
    meta = dict(session.get_modelmeta().custom_metadata_map)
    if md.LABELS in meta:
        try:
            meta[md.LABELS] = f"<{len(json.loads(meta[md.LABELS]))} names>"
        except json.JSONDecodeError:
            meta[md.LABELS] = "<not a JSON list: the service will refuse this model>"
    print(json.dumps(meta, indent=2))


def _run_compare(args: argparse.Namespace) -> int:
    from model_export import compare, photos, runtimes

    if args.count < 1 or args.batch_size < 1 or args.threads < 0:
        raise ExportError("--count and --batch-size must be positive, --threads not negative")
    if args.min_top1 is not None and not 0 <= args.min_top1 <= 1:
        raise ExportError("--min-top1 is a share between 0 and 1")
    paths = (
        photos.bundled_photo_paths()
        if args.images is None
        else photos.directory_photo_paths(args.images)
    )
    result: dict[str, Any] = {}
    opened: dict[str, runtimes.Runner] = {}
    for name in ("reference", "candidate"):
        path = getattr(args, name)
        runtime, precision = getattr(args, f"{name}_runtime"), getattr(args, f"{name}_precision")
        opened[name] = runtimes.open_runner(path, runtime, precision, args.threads)
        result[name] = compare.side(path, opened[name])
    result |= compare.compare(
        opened["reference"],
        opened["candidate"],
        args.reference,
        paths,
        args.count,
        args.seed,
        args.batch_size,
    )
    print(compare.format_report(result))
    if args.json_out is not None:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    top1 = result["agreement"]["top1_agreement"]
    if args.min_top1 is not None and top1 < args.min_top1:
        print(f"error: top-1 agreement {top1:.2%} is below {args.min_top1:.2%}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers: dict[str, Callable[[argparse.Namespace], int | None]] = {
        "export": _run_export,
        "annotate": _run_annotate,
        "inspect": _run_inspect,
        "compare": _run_compare,
        "quantize": quantize.run,
    }
    try:
        return handlers[args.command](args) or 0
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
