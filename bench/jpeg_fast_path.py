"""Large-JPEG fast path: Pillow ``Image.draft`` (DCT-scaled decode) against the exact recipe.

Run: ``python -m bench.jpeg_fast_path [--model M.onnx] [--name jpeg_fast_path]``

For ~640x480 and ~4000x3000 photos (see ``bench/photos.py``) it times decode + preprocess
(torchvision's eval recipe done with Pillow + NumPy: resize shorter side to 256, bilinear with
antialias, center crop 224, normalize) for the exact path and for JPEG draft decodes at 1/2,
1/4 and 1/8 scale, and for the rules "decode so the shorter side stays >= k x resize_size".
It reports the tensor difference to the exact path and how much a model's output moves.

With random weights every photo gets the same top-1 class, so raw top-1 agreement says
nothing. The script therefore also reports top-1 agreement of *centered* logits (the mean
logit vector over the exact-path images subtracted), which differs from photo to photo, and
the logit change relative to how much logits differ between photos. Pass ``--model`` with a
trained model's ONNX file to get real top-1 agreement instead.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.photos import SIZES, make_jpeg, make_photos, source_photos

RESIZE_SIZE = 256
CROP_SIZE = 224
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
RESULTS_DIR = Path(__file__).parent / "results"

# variant name -> function(image size) -> draft request, or None for the exact decode
Variant = Callable[[tuple[int, int]], tuple[int, int] | None]


def _scale(denominator: int) -> Variant:
    return lambda size: (math.ceil(size[0] / denominator), math.ceil(size[1] / denominator))


def _min_short_side(factor: float) -> Variant:
    """Draft request that keeps the decoded shorter side >= factor x RESIZE_SIZE."""

    def request(size: tuple[int, int]) -> tuple[int, int]:
        ratio = factor * RESIZE_SIZE / min(size)
        return (math.ceil(size[0] * ratio), math.ceil(size[1] * ratio))

    return request


VARIANTS: dict[str, Variant] = {
    "exact": lambda size: None,
    "draft 1/2": _scale(2),
    "draft 1/4": _scale(4),
    "draft 1/8": _scale(8),
    "short>=1x": _min_short_side(1.0),
    "short>=2x": _min_short_side(2.0),
    "short>=4x": _min_short_side(4.0),
}


def decode(jpeg: bytes, variant: Variant) -> Image.Image:
    """Open, optionally DCT-scale, and decode to RGB."""
    image = Image.open(io.BytesIO(jpeg))
    request = variant(image.size)
    if request is not None and request[0] < image.size[0]:
        image.draft("RGB", request)
    return image.convert("RGB")


def preprocess(image: Image.Image) -> np.ndarray:
    """torchvision ImageClassification(crop 224, resize 256, bilinear) with Pillow + NumPy."""
    w, h = image.size
    if w <= h:
        new_size = (RESIZE_SIZE, int(RESIZE_SIZE * h / w))
    else:
        new_size = (int(RESIZE_SIZE * w / h), RESIZE_SIZE)
    resized = image.resize(new_size, Image.Resampling.BILINEAR)
    left = round((new_size[0] - CROP_SIZE) / 2.0)
    top = round((new_size[1] - CROP_SIZE) / 2.0)
    cropped = resized.crop((left, top, left + CROP_SIZE, top + CROP_SIZE))
    pixels = np.asarray(cropped, dtype=np.float32) / 255.0
    return ((pixels - MEAN) / STD).transpose(2, 0, 1).copy()


def check_against_torchvision(jpeg: bytes) -> float:
    """Max abs difference between ``preprocess`` and torchvision's own transform."""
    from torchvision.models import DenseNet121_Weights

    image = decode(jpeg, VARIANTS["exact"])
    reference = DenseNet121_Weights.IMAGENET1K_V1.transforms()(image).numpy()
    return float(np.abs(reference - preprocess(image)).max())


def time_variant(jpegs: list[bytes], variant: Variant, repeats: int) -> dict[str, float]:
    """Median per photo of decode and preprocess times, averaged over photos (ms)."""
    decode_ms, total_ms = [], []
    for jpeg in jpegs:
        decode_runs, total_runs = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            image = decode(jpeg, variant)
            decoded = time.perf_counter()
            preprocess(image)
            decode_runs.append(decoded - start)
            total_runs.append(time.perf_counter() - start)
        decode_ms.append(statistics.median(decode_runs) * 1000)
        total_ms.append(statistics.median(total_runs) * 1000)
    return {"decode_ms": statistics.mean(decode_ms), "total_ms": statistics.mean(total_ms)}


def augmented_set(size_name: str, per_photo: int) -> list[bytes]:
    """Several crops/flips of each bundled photo at one size, for the agreement checks."""
    jpegs = []
    for index, (_, (_, image)) in enumerate(sorted(source_photos().items())):
        w, h = image.size
        for k in range(per_photo):
            shrink = 1.0 - 0.1 * k
            cw, ch = int(w * shrink), int(h * shrink)
            left, top = (w - cw) * (k % 2), (h - ch) * ((k // 2) % 2)
            view = image.crop((left, top, left + cw, top + ch))
            if k % 2:
                view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            jpegs.append(make_jpeg(view, size_name, seed=index * 100 + k)[0])
    return jpegs


def make_model(model_path: Path | None) -> Callable[[np.ndarray], np.ndarray]:
    """Batch of CHW tensors -> logits: the given ONNX file, else seeded random densenet121."""
    if model_path is not None:
        import onnxruntime as ort

        session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda batch: session.run(None, {name: batch})[0]
    import torch
    from torchvision.models import densenet121

    torch.manual_seed(0)
    model = densenet121().eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits: np.ndarray = model(torch.from_numpy(batch)).numpy()
            return logits

    return run


def compare(
    exact: np.ndarray, other: np.ndarray, logits: dict[str, np.ndarray]
) -> dict[str, float]:
    """Tensor difference and output movement of one variant against the exact path."""
    exact_logits, other_logits = logits["exact"], logits["other"]
    center = exact_logits.mean(axis=0)
    spread = np.linalg.norm(exact_logits - center, axis=1).mean()
    return {
        "max_abs_diff": float(np.abs(exact - other).max()),
        "mean_abs_diff": float(np.abs(exact - other).mean()),
        "top1_agreement": float((exact_logits.argmax(1) == other_logits.argmax(1)).mean()),
        "centered_top1_agreement": float(
            ((exact_logits - center).argmax(1) == (other_logits - center).argmax(1)).mean()
        ),
        "relative_logit_change": float(
            np.linalg.norm(exact_logits - other_logits, axis=1).mean() / spread
        ),
    }


def measure_size(
    size_name: str, args: argparse.Namespace, model: Callable[..., np.ndarray]
) -> dict[str, Any]:
    """Timing and accuracy of every variant for one photo size."""
    timing_jpegs = [photo.jpeg for photo in make_photos(size_name)]
    agreement_jpegs = augmented_set(size_name, args.per_photo)
    exact = np.stack([preprocess(decode(j, VARIANTS["exact"])) for j in agreement_jpegs])
    exact_logits = model(exact)
    exact_time = time_variant(timing_jpegs, VARIANTS["exact"], args.repeats)
    rows = []
    for name, variant in VARIANTS.items():
        decoded_size = decode(timing_jpegs[0], variant).size
        timing = (
            exact_time if name == "exact" else time_variant(timing_jpegs, variant, args.repeats)
        )
        tensors = np.stack([preprocess(decode(j, variant)) for j in agreement_jpegs])
        quality = compare(exact, tensors, {"exact": exact_logits, "other": model(tensors)})
        row = {
            "variant": name,
            "decoded_size": list(decoded_size),
            **timing,
            **quality,
            "speedup": exact_time["total_ms"] / timing["total_ms"],
        }
        rows.append(row)
        print(
            f"  {size_name:5} {name:10} decoded {decoded_size[0]}x{decoded_size[1]:<5} "
            f"{timing['total_ms']:7.1f} ms  x{row['speedup']:4.1f}  "
            f"max {quality['max_abs_diff']:.3f} mean {quality['mean_abs_diff']:.4f}  "
            f"top1 {quality['top1_agreement']:.2f} "
            f"centered {quality['centered_top1_agreement']:.2f} "
            f"dlogit {quality['relative_logit_change']:.3f}",
            flush=True,
        )
    distinct = len(set(exact_logits.argmax(1).tolist()))
    return {
        "size": list(SIZES[size_name]),
        "photos_timed": len(timing_jpegs),
        "photos_compared": len(agreement_jpegs),
        "distinct_top1_classes": distinct,
        "variants": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# JPEG fast path ({result['model']})",
        "",
        "| size | variant | decoded | decode ms | decode+preprocess ms | speedup | max abs diff "
        "| mean abs diff | top-1 agree | centered top-1 agree | rel. logit change |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size_name, block in result["sizes"].items():
        for row in block["variants"]:
            w, h = row["decoded_size"]
            lines.append(
                f"| {size_name} | {row['variant']} | {w}x{h} | {row['decode_ms']:.1f} "
                f"| {row['total_ms']:.1f} | {row['speedup']:.1f}x | {row['max_abs_diff']:.3f} "
                f"| {row['mean_abs_diff']:.4f} | {row['top1_agreement']:.2f} "
                f"| {row['centered_top1_agreement']:.2f} | {row['relative_logit_change']:.3f} |"
            )
    lines += ["", f"Photos: {', '.join(result['photos'])}.", result["note"], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="ONNX file (default: random densenet121)")
    parser.add_argument("--name", default="jpeg_fast_path", help="results file stem")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--per-photo", type=int, default=4, help="augmented views per photo")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    photos = {name: source for name, (source, _) in sorted(source_photos().items())}
    probe = make_jpeg(next(iter(source_photos().values()))[1], "web")[0]
    print(f"preprocess vs torchvision max abs diff: {check_against_torchvision(probe):.2e}")
    model = make_model(args.model)
    result = {
        "model": str(args.model) if args.model else "densenet121, random weights (seed 0)",
        "photos": [f"{name} ({source})" for name, source in photos.items()],
        "sizes": {name: measure_size(name, args, model) for name in SIZES},
        "note": "Times: one thread, median of repeats per photo, mean over photos. Differences "
        "are against the exact decode on the same JPEG, in normalized tensor units.",
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.results_dir / f"{args.name}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
