"""The host's pip configuration, and what it points at, as a home directory for a build.

Reads `pip config list` on stdin (it states both the configuration files and the PIP_*
environment, as `section.key='value'`) and fills the directory given as
`.config/pip/pip.conf` plus `.config/pip/host/`, which holds every local path that
configuration names (index directories, find-links, constraints, the CA bundle) as hard
links where it can, copies where it cannot; paths in the configuration are rewritten to
where they will be seen.

scripts/container-test.sh mounts that directory over the build's existing /root, so
pip in every RUN step (as root) finds the same package index as the host. A mount on a
directory the base already has leaves nothing behind in the image; one on a new path
(/etc/pip.conf, /opt/...) would leave an empty file or directory in every layer.
"""

from __future__ import annotations

import ast
import configparser
import os
import shutil
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

ENV_SECTION = ":env:"  # how `pip config list` names PIP_* variables; they win over files
# An index that cannot be reached is given up after one quick retry instead of pip's five
# backed-off ones, per project page. The host's own setting wins.
BUILD_DEFAULTS = {"retries": "1"}
MOUNTED_AT = Path("/root")  # the home of the build's root user
CONFIG = Path(".config/pip")


def parse(listing: str) -> dict[str, dict[str, str]]:
    """`section.key='value'` lines -> {section: {key: value}}, the environment last."""
    sections: dict[str, dict[str, str]] = {"global": dict(BUILD_DEFAULTS)}
    env: dict[str, str] = {}
    for line in listing.splitlines():
        name, _, raw = line.partition("=")
        section, _, key = name.rpartition(".")
        value = str(ast.literal_eval(raw))
        if section == ENV_SECTION:
            env[key] = value
        else:
            sections.setdefault(section, {})[key] = value
    sections["global"].update(env)
    return sections


def as_path(word: str) -> Path | None:
    """The existing local path a configuration word names (a path or a file: URL)."""
    path = Path(unquote(urlparse(word).path) if word.startswith("file:") else word)
    return path if path.is_absolute() and path.exists() else None


def local_roots(sections: dict[str, dict[str, str]]) -> list[Path]:
    """Host paths to carry. A PEP 503 index root `.../simple` links its files as
    `../../files/...`: its parent is carried. A path inside another travels with it."""
    found: set[Path] = set()
    for values in sections.values():
        for value in values.values():
            for path in filter(None, map(as_path, value.split())):
                found.add(path.parent if path.name == "simple" else path)
    return sorted(p for p in found if not any(q in p.parents for q in found))


def rewrite(word: str, moved: dict[Path, Path]) -> str:
    path = as_path(word)
    if path is None:
        return word
    for root, seen_at in moved.items():
        if path == root or root in path.parents:
            new = seen_at / path.relative_to(root)
            return new.as_uri() if word.startswith("file:") else str(new)
    return word


def carry(source: Path, target: Path) -> None:
    """Hard links (same filesystem: instant, no space), else copies."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    if source.is_dir():
        shutil.copytree(source, target, copy_function=link, symlinks=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        link(str(source), str(target))


def main(home: Path) -> None:
    sections = parse(sys.stdin.read())
    moved: dict[Path, Path] = {}
    for number, root in enumerate(local_roots(sections)):
        relative = CONFIG / "host" / f"{number}-{root.name}"
        carry(root, home / relative)
        moved[root] = MOUNTED_AT / relative
        print(f"{root} -> {moved[root]}")
    config = configparser.RawConfigParser()
    for section, values in sections.items():
        config[section] = {
            key: " ".join(rewrite(word, moved) for word in value.split())
            for key, value in values.items()
        }
    (home / CONFIG).mkdir(parents=True, exist_ok=True)
    with open(home / CONFIG / "pip.conf", "w", encoding="utf-8") as file:
        config.write(file)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
