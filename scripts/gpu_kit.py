"""The offline GPU kit (scripts/gpu-kit.sh): wheels for a machine that cannot download.

``build`` resolves the requirements for the target's Python and platform with pip, leaves
out what the target already has (the TARGET_HAS list, and everything those packages need),
downloads the rest, splits every file over PART_SIZE bytes into numbered pieces, packs the
pieces into folders ``part-NNN/`` of at most PART_SIZE bytes each (one folder = one copy),
and writes:

  manifest.tsv      one wheel a line: file, size, sha256, name, version, its pieces in order
  parts.sha256      every piece (``sha256sum -c`` format), to find a damaged copy
  requirements.txt  what the target installs: the requirements (without extras) and a pin
                    for every wheel in the kit but the fallbacks (below)
  kit.env           the target the kit was made for (read by run.sh)

A listed package without a pin (``numpy``) that a requirement holds to a range
(``numpy>=1.26``) is a fallback: the target's copy may be older than the range, so the kit
carries its wheel (and what that needs) anyway, unpinned, so that pip keeps the target's
copy where it satisfies the range and installs the kit's otherwise.

The target reassembles with run.sh (scripts/gpu-check.sh), which needs nothing but bash,
coreutils and the target's Python.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

PART_SIZE = 60_000_000  # the target receives files of at most 60 MB
MANIFEST_COLUMNS = ("file", "size", "sha256", "name", "version", "parts")


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    file: str  # the wheel's file name


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_list(path: Path) -> list[str]:
    """Requirement lines, without comments and blank lines."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def project_requirements(pyproject: Path, extras: list[str]) -> list[str]:
    """The service's dependencies and EXTRAS; onnxruntime-gpu replaces onnxruntime."""
    project = tomllib.loads(pyproject.read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in extras:
        wanted += project["optional-dependencies"][extra]
    return [r for r in wanted if requirement_name(r) != "onnxruntime"]


def platform_args(python_version: str, platform: str) -> list[str]:
    """pip's target options. pip matches --platform literally, so a manylinux_2_X platform
    also names every older glibc and the legacy aliases its wheels may carry."""
    args = ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp"]
    args += ["--abi", f"cp{python_version.replace('.', '')}", "--abi", "abi3", "--abi", "none"]
    found = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    platforms = [platform]
    if found:
        glibc, arch = int(found.group(1)), found.group(2)
        platforms = [f"manylinux_2_{m}_{arch}" for m in range(glibc, 4, -1)]
        platforms += [f"manylinux{alias}_{arch}" for alias in ("2014", "2010", "1")]
    for name in platforms:
        args += ["--platform", name]
    return args


def resolve(requirements: list[str], constraints: list[str], pip_args: list[str]) -> list[Wheel]:
    """What pip would install for the target (metadata only, nothing installed)."""
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        (work / "requirements.txt").write_text("\n".join(requirements) + "\n")
        (work / "constraints.txt").write_text("\n".join(constraints) + "\n")
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
        command += ["--quiet", "--report", str(work / "report.json")]
        command += ["--target", str(work / "target"), *pip_args]
        command += ["-r", str(work / "requirements.txt"), "-c", str(work / "constraints.txt")]
        subprocess.run(command, check=True)  # noqa: S603 (pip, with this script's arguments)
        report = json.loads((work / "report.json").read_text())
    return [
        Wheel(
            item["metadata"]["name"],
            item["metadata"]["version"],
            item["download_info"]["url"].rsplit("/", 1)[1],
        )
        for item in report["install"]
    ]


def download(wheels: list[Wheel], dest: Path, pip_args: list[str]) -> None:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest)]
    command += [*pip_args, *(f"{w.name}=={w.version}" for w in wheels)]
    subprocess.run(command, check=True)  # noqa: S603 (pip, with this script's arguments)
    missing = [w.file for w in wheels if not (dest / w.file).is_file()]
    if missing:
        raise SystemExit(f"gpu-kit: pip download did not write {missing}")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _folder_for(used: list[int], size: int, part_size: int) -> int:
    """The first part-NNN folder with room for SIZE bytes (a new one if none has)."""
    for number, taken in enumerate(used):
        if taken + size <= part_size:
            used[number] += size
            return number
    used.append(size)
    return len(used) - 1


def pack(staging: Path, wheels: list[Wheel], kit: Path, part_size: int) -> None:
    """Pieces of at most PART_SIZE bytes, in folders part-NNN of at most PART_SIZE bytes."""
    used: list[int] = []  # bytes in each part-NNN folder
    rows, sums = [], []
    for wheel in sorted(wheels, key=lambda w: w.file):
        source = staging / wheel.file
        size, pieces = source.stat().st_size, []
        with open(source, "rb") as file:
            for number in range(max(1, -(-size // part_size))):
                data = file.read(part_size)
                folder = _folder_for(used, len(data), part_size)
                suffix = "" if size <= part_size else f".{number:03d}"
                piece = f"part-{folder:03d}/{wheel.file}{suffix}"
                (kit / piece).parent.mkdir(parents=True, exist_ok=True)
                (kit / piece).write_bytes(data)
                pieces.append(piece)
                sums.append(f"{hashlib.sha256(data).hexdigest()}  {piece}")
        row = (wheel.file, str(size), sha256(source), wheel.name, wheel.version, ",".join(pieces))
        rows.append("\t".join(row))
    header = "\t".join(MANIFEST_COLUMNS)
    (kit / "manifest.tsv").write_text(header + "\n" + "\n".join(rows) + "\n")
    (kit / "parts.sha256").write_text("\n".join(sums) + "\n")


def requirement_name(line: str) -> str:
    return canonical(re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0])


def pinned(target_has: list[str]) -> list[str]:
    return [line for line in target_has if "==" in line]


def has_range(line: str) -> bool:
    return re.search(r"[<>=!~]", line.split(";", 1)[0]) is not None


def fallbacks(target_has: list[str], requirements: list[str]) -> set[str]:
    """Listed packages without a pin that a requirement holds to a version range: the kit
    carries them in case the target's copy is too old (e.g. grpcio>=1.81.1)."""
    ranged = {requirement_name(line) for line in requirements if has_range(line)}
    return {requirement_name(line) for line in target_has if "==" not in line} & ranged


def present(target_has: list[str], requirements: list[str], pip_args: list[str]) -> set[str]:
    """What the kit leaves out: the packages listed, but the fallbacks, and what they need,
    except a package the requirements name themselves (its version range may be narrower
    than what the target has, e.g. protobuf) unless it is listed too."""
    carried = fallbacks(target_has, requirements)
    kept = [line for line in target_has if requirement_name(line) not in carried]
    listed = {requirement_name(line) for line in kept}
    needed = {canonical(w.name) for w in resolve(kept, [], pip_args)} if kept else set()
    direct = {requirement_name(line) for line in requirements}
    return listed | (needed - direct)


def unpinned(target_has: list[str], requirements: list[str], pip_args: list[str]) -> set[str]:
    """The fallbacks and what they need: left unpinned in the kit's requirements.txt, so
    that pip takes the target's copy wherever its version satisfies the requirements."""
    carried = fallbacks(target_has, requirements)
    lines = [line for line in requirements if requirement_name(line) in carried]
    found = resolve(lines, pinned(target_has), pip_args) if lines else []
    return {canonical(w.name) for w in found}


def say(text: str) -> None:
    print(f"gpu-kit: {text}", file=sys.stderr)


def build(args: argparse.Namespace) -> None:
    pip_args = platform_args(args.python_version, args.platform) + args.pip_arg
    requirements = []
    if args.project:
        requirements += project_requirements(args.project, args.extra)
    for path in args.requirements:
        requirements += read_list(path)
    target_has = read_list(args.target_has)
    say(f"resolving for cp{args.python_version} {args.platform}: what the target has")
    wanted = resolve(requirements, pinned(target_has), pip_args)
    left_out = present(target_has, requirements, pip_args)
    wanted = [w for w in wanted if canonical(w.name) not in left_out]
    loose = unpinned(target_has, requirements, pip_args)
    if loose:
        say(f"carried in case the target's copy is too old, unpinned: {' '.join(sorted(loose))}")
    if args.kit.exists():
        shutil.rmtree(args.kit)
    args.kit.mkdir(parents=True)
    staging = args.kit / ".download"
    say(f"downloading {len(wanted)} wheels: {' '.join(w.name for w in wanted)}")
    download(wanted, staging, pip_args)
    pack(staging, wanted, args.kit, args.part_size)
    shutil.rmtree(staging)
    lines = [re.sub(r"\[[^]]*\]", "", r) for r in requirements]
    lines += [f"{w.name}=={w.version}" for w in wanted if canonical(w.name) not in loose]
    (args.kit / "requirements.txt").write_text("\n".join(lines) + "\n")
    env = {
        "KIT_PYTHON": args.python_version,
        "KIT_PLATFORM": args.platform,
        "KIT_PART_SIZE": str(args.part_size),
        "KIT_CREATED": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (args.kit / "kit.env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    folders = sorted(p.name for p in args.kit.glob("part-*"))
    size = sum(f.stat().st_size for f in args.kit.rglob("*") if f.is_file())
    say(f"{args.kit}: {len(wanted)} wheels, {size / 1e6:.0f} MB in {len(folders)} folders")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scripts/gpu_kit.py", description=__doc__)
    parser.add_argument("--kit", type=Path, required=True, help="the kit folder (replaced)")
    parser.add_argument("--target-has", type=Path, required=True, help="a requirement a line")
    parser.add_argument("--project", type=Path, help="pyproject.toml whose dependencies to add")
    parser.add_argument("--extra", action="append", default=[], help="its extras to add too")
    parser.add_argument("--requirements", type=Path, action="append", default=[])
    parser.add_argument("--python-version", default="3.12")
    parser.add_argument("--platform", default="manylinux_2_28_x86_64")
    parser.add_argument("--part-size", type=int, default=PART_SIZE, help="bytes")
    parser.add_argument("--pip-arg", action="append", default=[], help="passed to pip")
    build(parser.parse_args(argv))


if __name__ == "__main__":
    main()
