"""The decode-bound ceiling: how many photos per second this machine's CPUs turn into
model input, with no model and no HTTP (``python -m bench gpu`` reports it beside the
service, whose GPU may wait on its CPUs).

Run: ``python -m bench.gpu_decode --photos DIR --seconds 5 [--processes N]``. Each process
runs the service's own preprocessing (app.preprocess: decode, resize, crop, normalize) on
the photos in turn; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from app.config import Settings
from app.model_spec import IMAGENET_DEFAULTS, Recipe
from app.preprocess import preprocess


def _recipe() -> Recipe:
    return Recipe(
        resize_size=int(IMAGENET_DEFAULTS["resize_size"]),
        crop_size=int(IMAGENET_DEFAULTS["crop_size"]),
        interpolation=str(IMAGENET_DEFAULTS["interpolation"]),
        mean=tuple(json.loads(IMAGENET_DEFAULTS["mean"])),
        std=tuple(json.loads(IMAGENET_DEFAULTS["std"])),
    )


def _worker(photos: list[bytes], seconds: float) -> int:
    recipe, settings = _recipe(), Settings()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        preprocess(
            photos[done % len(photos)], recipe, settings.max_image_pixels, settings.jpeg_draft
        )
        done += 1
    return done


def ceiling(photo_dir: Path, seconds: float, processes: int) -> dict[str, object]:
    photos = [p.read_bytes() for p in sorted(photo_dir.glob("*.jpg"))]
    with ProcessPoolExecutor(processes) as pool:
        started = time.perf_counter()
        counts = list(pool.map(_worker, [photos] * processes, [seconds] * processes))
        took = time.perf_counter() - started
    return {
        "photos": photo_dir.name,
        "processes": processes,
        "images_per_s": sum(counts) / seconds,
        "cpu_ms_per_image": 1000 * processes * seconds / max(1, sum(counts)),
        "wall_s": took,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_decode", description=__doc__)
    parser.add_argument("--photos", required=True, type=Path)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--processes", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args(argv)
    json.dump(ceiling(args.photos, args.seconds, args.processes), sys.stdout)


if __name__ == "__main__":
    main()
