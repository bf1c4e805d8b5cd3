"""What a fresh clone holds: nothing that works only on the machine that committed it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tracked_symlinks() -> list[Path]:
    listing = subprocess.run(
        ["git", "ls-files", "--stage"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [
        ROOT / line.split("\t", 1)[1] for line in listing.splitlines() if line.startswith("120000")
    ]


def test_every_tracked_link_points_inside_the_checkout_at_something_there() -> None:
    for link in tracked_symlinks():
        target = link.resolve()
        assert target.is_relative_to(ROOT), f"{link.relative_to(ROOT)} points outside: {target}"
        assert target.exists(), f"{link.relative_to(ROOT)} dangles: {target}"


def test_the_container_check_installs_what_podmans_network_backend_runs() -> None:
    """netavark runs iptables for every network, a build's included: without it `podman
    build` fails at its first RUN step on a machine that never had it."""
    lib = (ROOT / "scripts" / "containers" / "lib.sh").read_text()
    packages = set(re.findall(r"\[([a-z0-9-]+)\]=/", lib))
    assert {"podman", "netavark", "aardvark-dns", "iptables"} <= packages
