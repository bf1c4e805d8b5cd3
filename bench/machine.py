"""Describe the machine and the test photos, for the results file."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from PIL import Image

from app.config import available_cpus
from bench.photos import GRAIN_SIGMA, JPEG_QUALITY, source_photos

_PACKAGES = ("onnxruntime", "torch", "torchvision", "pillow", "numpy", "fastapi", "uvicorn")


def _cpu() -> dict[str, Any]:
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    wanted = (
        "avx2",
        "fma",
        "avx512f",
        "avx512_vnni",
        "avx_vnni",
        "avx512_bf16",
        "amx_tile",
        "amx_bf16",
    )
    return {"model": model, "flags": [f for f in wanted if f in flags]}


def describe() -> dict[str, Any]:
    """CPU, core counts, memory, OS and the versions that decide the numbers."""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory_gib = round(pages / 2**30, 1)
    except (ValueError, OSError):
        memory_gib = None
    versions: dict[str, str | None] = {}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": _cpu(),
        "logical_cpus": os.cpu_count(),
        "cpus_available": available_cpus(),
        "memory_gib": memory_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


def photo_info(directories: dict[str, Path]) -> dict[str, Any]:
    """Where the photos come from and what the JPEGs sent are like."""
    info: dict[str, Any] = {
        "sources": {name: source for name, (source, _) in sorted(source_photos().items())},
        "jpeg_quality": JPEG_QUALITY,
        "grain_sigma_when_upscaled": GRAIN_SIGMA,
    }
    for size, directory in directories.items():
        files = sorted(directory.glob("*.jpg"))
        dims = {Image.open(f).size for f in files}
        info[size] = {
            "files": [f.stem for f in files],
            "dimensions": sorted(f"{w}x{h}" for w, h in dims),
            "mean_kib": round(sum(f.stat().st_size for f in files) / len(files) / 1024),
        }
    return info
