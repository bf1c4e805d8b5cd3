"""The offline GPU kit (scripts/gpu-kit.sh, scripts/gpu_kit.py) and its check
(scripts/gpu-check.sh, the kit's run.sh), without a GPU and without the network.

A real kit is built by the real script with the real pip, from a local folder of small
wheels made here (`--pip-arg=--no-index`), for this machine's Python, with a part size
small enough that one wheel is split. The check then reassembles it, refuses to go on
without a GPU, and dry-runs its install step with pip against the kit: with the pip wheel
that this Python bundles (ensurepip's) in the kit, as the real kit carries pip, so that
nothing depends on the base interpreter having pip; and without one in the kit.
"""

from __future__ import annotations

import base64
import csv
import ensurepip
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PART_SIZE = 20_000  # bytes: the 50 kB wheel below comes in three pieces
PYTHON_VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"


def make_wheel(folder: Path, name: str, requires: tuple[str, ...] = (), payload: int = 0) -> Path:
    """A valid pure-Python wheel NAME-1.0; PAYLOAD bytes of incompressible data inside."""
    dist = f"{name}-1.0.dist-info"
    files = {
        f"{name}/__init__.py": b"",
        f"{name}/data.bin": os.urandom(payload),
        f"{dist}/METADATA": "\n".join(
            ["Metadata-Version: 2.1", f"Name: {name}", "Version: 1.0"]
            + [f"Requires-Dist: {r}" for r in requires]
        ).encode()
        + b"\n",
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    path = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as wheel:
        record = []
        for member, data in files.items():
            wheel.writestr(member, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{member},sha256={digest.decode()},{len(data)}")
        record.append(f"{dist}/RECORD,,")
        wheel.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return path


def offline_env() -> dict[str, str]:
    """pip without this machine's configuration (its index, its find-links): offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1"}


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheelhouse")
    make_wheel(folder, "alpha", requires=("beta",))
    make_wheel(folder, "beta", payload=50_000)
    make_wheel(folder, "gamma", requires=("present",))
    make_wheel(folder, "present", requires=("present_dep",))
    make_wheel(folder, "present_dep")
    return folder


def bundled_pip() -> Path:
    """The pip wheel this Python bundles (ensurepip's; Debian keeps it elsewhere)."""
    folders = [Path(ensurepip.__file__).parent / "_bundled", Path("/usr/share/python-wheels")]
    found = [wheel for folder in folders for wheel in sorted(folder.glob("pip-*.whl"))]
    if not found:
        pytest.skip("this Python bundles no pip wheel")
    return found[0]


def build(
    kit: Path,
    wheelhouse: Path,
    requirements: list[str],
    target_has: list[str],
    part_size: int = PART_SIZE,
) -> None:
    inputs = kit.parent / f"{kit.name}-inputs"
    inputs.mkdir()
    (inputs / "requirements.txt").write_text("\n".join(requirements) + "\n")
    (inputs / "target-has.txt").write_text("# a comment\n" + "\n".join(target_has) + "\n")
    command = [
        "scripts/gpu-kit.sh",
        "--kit",
        str(kit),
        "--target-has",
        str(inputs / "target-has.txt"),
    ]
    command += [
        "--requirements",
        str(inputs / "requirements.txt"),
        "--python-version",
        PYTHON_VERSION,
    ]
    command += [
        "--part-size",
        str(part_size),
        "--pip-arg=--no-index",
        f"--pip-arg=--find-links={wheelhouse}",
    ]
    env = {**offline_env(), "PYTHON": sys.executable}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Path:
    folder = tmp_path_factory.mktemp("kits") / "kit"
    build(folder, wheelhouse, ["alpha"], ["present==1.0"])
    return folder


@pytest.fixture(scope="module")
def kit_with_pip(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Path:
    """A kit that carries pip, as the real one does (scripts/gpu-kit-requirements.txt)."""
    folder = tmp_path_factory.mktemp("kits-with-pip")
    wheels = folder / "wheelhouse"
    shutil.copytree(wheelhouse, wheels)
    shutil.copy(bundled_pip(), wheels)
    build(folder / "kit", wheels, ["alpha", "pip"], ["present==1.0"], part_size=10_000_000)
    return folder / "kit"


def manifest(kit: Path) -> dict[str, dict[str, str]]:
    with open(kit / "manifest.tsv", newline="") as file:
        return {row["name"]: row for row in csv.DictReader(file, delimiter="\t")}


def run_check(kit: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**offline_env(), "PYTHON": sys.executable, "PATH": path or os.environ["PATH"]}
    return subprocess.run(
        [str(kit / "run.sh"), *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_kit_holds_what_the_target_lacks_in_parts_with_checksums(
    kit: Path, wheelhouse: Path
) -> None:
    rows = manifest(kit)
    assert sorted(rows) == ["alpha", "beta"]
    for row in rows.values():
        original = wheelhouse / row["file"]
        assert row["sha256"] == hashlib.sha256(original.read_bytes()).hexdigest()
        assert int(row["size"]) == original.stat().st_size
    pieces = rows["beta"]["parts"].split(",")
    assert len(pieces) == 3
    assert [p.rsplit(".", 1)[1] for p in pieces] == ["000", "001", "002"]
    folders = sorted(kit.glob("part-*"))
    assert len(folders) >= 3
    for folder in folders:  # each folder is one copy of at most PART_SIZE bytes
        assert sum(f.stat().st_size for f in folder.iterdir()) <= PART_SIZE
    sums = (kit / "parts.sha256").read_text().splitlines()
    assert len(sums) == 4
    subprocess.run(["sha256sum", "--check", "--quiet", "parts.sha256"], cwd=kit, check=True)
    assert "alpha==1.0" in (kit / "requirements.txt").read_text().splitlines()
    assert f"KIT_PYTHON={PYTHON_VERSION}" in (kit / "kit.env").read_text()
    assert (kit / "run.sh").read_bytes() == (ROOT / "scripts" / "gpu-check.sh").read_bytes()


def test_what_the_target_has_is_left_out_with_what_it_needs(
    tmp_path: Path, wheelhouse: Path
) -> None:
    # gamma needs present (listed), which needs present_dep: both stay out.
    build(tmp_path / "kit", wheelhouse, ["alpha", "gamma"], ["present"])
    assert sorted(manifest(tmp_path / "kit")) == ["alpha", "beta", "gamma"]
    # present_dep named by a requirement itself: its range may be narrower, it comes along.
    build(tmp_path / "kit2", wheelhouse, ["gamma", "present_dep"], ["present"])
    assert sorted(manifest(tmp_path / "kit2")) == ["gamma", "present_dep"]


def test_a_listed_package_that_a_requirement_holds_to_a_range_is_carried_unpinned(
    tmp_path: Path, wheelhouse: Path
) -> None:
    # The target has present, version unknown; the service wants present>=1.0: the kit
    # carries it and what it needs, unpinned, so that pip keeps the target's copy where it
    # satisfies the range and installs the kit's where it does not (or where there is none).
    kit = tmp_path / "kit"
    build(kit, wheelhouse, ["gamma", "present>=1.0"], ["present"])
    assert sorted(manifest(kit)) == ["gamma", "present", "present_dep"]
    lines = (kit / "requirements.txt").read_text().splitlines()
    assert lines == ["gamma", "present>=1.0", "gamma==1.0"]
    done = run_check(kit, "--dry-run")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "Would install gamma-1.0 present-1.0 present_dep-1.0" in done.stdout
    # A pinned line is the target's version for sure: left out, as before.
    build(tmp_path / "kit2", wheelhouse, ["gamma", "present>=1.0"], ["present==1.0"])
    assert sorted(manifest(tmp_path / "kit2")) == ["gamma"]


def test_reassembled_wheels_equal_the_originals(kit: Path, wheelhouse: Path) -> None:
    done = run_check(kit, "--verify")
    assert done.returncode == 0, done.stderr
    assert "2 wheels reassembled" in done.stderr
    for row in manifest(kit).values():
        assert (kit / "wheels" / row["file"]).read_bytes() == (
            wheelhouse / row["file"]
        ).read_bytes()


def test_a_damaged_or_missing_piece_is_named(tmp_path: Path, kit: Path) -> None:
    copy = tmp_path / "kit"
    shutil.copytree(kit, copy)
    piece = copy / manifest(copy)["beta"]["parts"].split(",")[1]
    data = bytearray(piece.read_bytes())
    data[100] ^= 0xFF
    piece.write_bytes(bytes(data))
    done = run_check(copy, "--verify")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "beta-1.0-py3-none-any.whl: sha256" in done.stderr
    piece.unlink()
    done = run_check(copy, "--verify")
    assert done.returncode == 1
    assert f"pieces are missing, e.g. {piece} (copy {piece.parent.name}/)" in done.stderr


def test_the_check_refuses_without_a_gpu_in_one_line(tmp_path: Path, kit: Path) -> None:
    copy = tmp_path / "kit"
    shutil.copytree(kit, copy)
    shutil.rmtree(copy / "wheels", ignore_errors=True)
    before = sorted(p.name for p in copy.iterdir())
    no_gpu_path = os.pathsep.join(
        d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "nvidia-smi").exists()
    )
    done = run_check(copy, path=no_gpu_path)
    assert done.returncode != 0
    assert done.stderr == "gpu-check: FAIL: no NVIDIA GPU here: nvidia-smi is not installed\n"
    # nvidia-smi present but no driver, as on a machine whose GPU is gone.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text(
        "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the "
        "NVIDIA driver.'\nexit 9\n"
    )
    (fake / "nvidia-smi").chmod(0o755)
    done = run_check(copy, path=f"{fake}{os.pathsep}{no_gpu_path}")
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    assert len(lines) == 1
    assert "no NVIDIA GPU here: nvidia-smi: NVIDIA-SMI has failed" in lines[0]
    assert sorted(p.name for p in copy.iterdir()) == before  # nothing written


def venv_pip(kit: Path) -> list[str]:
    """The pip versions installed in the check's private virtualenv itself."""
    return sorted(p.name for p in (kit / "env").glob("lib/python*/site-packages/pip-*.dist-info"))


def test_the_install_step_dry_runs_with_the_kits_pip(kit_with_pip: Path) -> None:
    done = run_check(kit_with_pip, "--dry-run")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "Would install alpha-1.0 beta-1.0" in done.stdout
    config = (kit_with_pip / "env" / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = true" in config
    version = bundled_pip().name.split("-")[1]
    assert venv_pip(kit_with_pip) == [f"pip-{version}.dist-info"]  # from the kit's wheel


def test_without_a_pip_wheel_the_check_takes_pythons_own(kit: Path) -> None:
    done = run_check(kit, "--dry-run")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "Would install alpha-1.0 beta-1.0" in done.stdout
    # A pip runs in the virtualenv: ensurepip's, or the system's where that is as new.
    subprocess.run([kit / "env" / "bin" / "python", "-m", "pip", "--version"], check=True)


def test_the_check_wants_the_kits_python(tmp_path: Path, kit: Path) -> None:
    copy = tmp_path / "kit"
    shutil.copytree(kit, copy)
    env_file = copy / "kit.env"
    env_file.write_text(
        env_file.read_text().replace(f"KIT_PYTHON={PYTHON_VERSION}", "KIT_PYTHON=3.99")
    )
    done = run_check(copy, "--verify")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"gpu-check: FAIL: the kit holds wheels for Python 3.99; {sys.executable} is "
        f"{PYTHON_VERSION} (set PYTHON)"
    ]
