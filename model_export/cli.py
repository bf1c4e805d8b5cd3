"""`python -m model_export {export,annotate,inspect}`: see README "Exporting a model"."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from model_export import metadata as md
from model_export.errors import ExportError


def _parser() -> argparse.ArgumentParser:
    from model_export.models import ARCHS

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
        "--tolerance",
        type=float,
        default=1e-4,
        help="max |PyTorch - ONNX Runtime| logit difference (default 1e-4)",
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
    return parser


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
    from model_export.export import export

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
    output = args.output or Path("models") / f"{args.arch}.onnx"
    report = export(model, output, args.opset, args.tolerance)
    print(
        f"exported {model.arch} ({model.weights}: {model.weights_source}) to {report.path}\n"
        f"  parity: max |PyTorch - ONNX Runtime| = {report.max_abs_diff:.3g} "
        f"(tolerance {args.tolerance:g})\n"
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"export": _run_export, "annotate": _run_annotate, "inspect": _run_inspect}
    try:
        handlers[args.command](args)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
