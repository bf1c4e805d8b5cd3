"""README and docs/ stay short, linked, complete and true to the code: the size bound, every
relative link and anchor, every setting and error code documented, the quick start's
commands run against a real server, and the generated architecture diagram up to date."""

from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server import running

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_URL = "http://127.0.0.1:8000"  # where the README's examples send their requests
SAMPLE = "samples/cat.jpg"

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SETTING = re.compile(r"\bDENSENET_[A-Z][A-Z0-9_]*\b")


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def docs_text() -> str:
    return "\n".join(page.read_text() for page in sorted(DOCS.glob("*.md")))


def prose(text: str) -> str:
    """Markdown without its fenced code blocks (links and headings there are not real)."""
    return FENCE.sub("", text)


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for heading in HEADING.findall(prose(page.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def test_readme_is_at_most_300_lines() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= 300, f"README.md has {lines} lines; move the depth into docs/"


def test_readme_names_the_prerequisites_and_the_two_commands() -> None:
    text = README.read_text()
    for needed in ("python3-venv", "`make`", "disk", "make serve", "make test"):
        assert needed in text, needed


def test_every_relative_link_and_anchor_resolves() -> None:
    broken = []
    for page in pages():
        for target in LINK.findall(prose(page.read_text())):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path_part, _, anchor = target.partition("#")
            linked = (page.parent / path_part).resolve() if path_part else page
            where = f"{page.relative_to(ROOT)}: {target}"
            if not linked.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{where} (no such heading)")
    assert broken == []


def settings_in_code() -> set[str]:
    """Every DENSENET_* variable the service reads: the settings class and any other read."""
    from app.config import Settings

    names = {f"DENSENET_{field.upper()}" for field in Settings.model_fields}
    for path in (ROOT / "app").rglob("*.py"):
        names |= set(SETTING.findall(path.read_text()))
    return names


def test_every_setting_is_documented() -> None:
    documented = set(SETTING.findall(docs_text()))
    assert sorted(settings_in_code() - documented) == []


def test_every_documented_setting_exists() -> None:
    """A DENSENET_* name in README or docs/ is one the service, a script or a benchmark reads."""
    known = settings_in_code()
    for folder in ("scripts", "bench", "docker", "deploy"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in (".py", ".sh", ".yml", ".yaml", ""):
                known |= set(SETTING.findall(path.read_text(errors="ignore")))
    mentioned = set().union(*(SETTING.findall(page.read_text()) for page in pages()))
    assert sorted(mentioned - known) == []


def error_codes() -> set[str]:
    """Every `code = "..."` (or `status, code = ..., "..."`) of a class under app/."""
    codes: set[str] = set()
    for path in (ROOT / "app").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            for statement in node.body:
                target = getattr(statement, "target", None)
                targets = [target] if target else getattr(statement, "targets", [])
                value = getattr(statement, "value", None)
                for each in targets:
                    if isinstance(each, ast.Name) and each.id == "code":
                        names, values = [each], [value]
                    elif isinstance(each, ast.Tuple) and isinstance(value, ast.Tuple):
                        names, values = each.elts, value.elts
                    else:
                        continue
                    codes.update(
                        item.value
                        for name, item in zip(names, values, strict=False)
                        if isinstance(name, ast.Name) and name.id == "code"
                        if isinstance(item, ast.Constant) and isinstance(item.value, str)
                    )
    return codes


def test_every_error_code_is_documented() -> None:
    codes = error_codes()
    assert {"invalid_image", "internal_error", "overloaded"} <= codes  # the scan finds them
    text = docs_text()
    assert sorted(code for code in codes if f"`{code}`" not in text) == []


def test_the_install_list_names_everything_make_test_installs() -> None:
    """Each installer the Makefile's pytest target runs is named in the development guide."""
    makefile = (ROOT / "Makefile").read_text()
    target = makefile.split("\npytest:", 1)[1].split("\n\n", 1)[0]
    installers = set(re.findall(r"((?:scripts|bench)/[\w/.-]+\.sh)", target))
    assert installers, "no installers found in the Makefile's pytest target"
    guide = (DOCS / "development.md").read_text()
    assert sorted(i for i in installers if i not in guide) == []
    for needed in ("haproxy", "npm", ".venv-kserve"):
        assert needed in guide, needed


def test_the_architecture_diagram_is_what_the_code_draws() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/architecture.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def readme_commands(prefix: str) -> list[str]:
    """The README's shell lines that start with `prefix` and use the sample photo."""
    lines = "\n".join(code_blocks(README.read_text(), "bash")).splitlines()
    return [line.strip() for line in lines if line.strip().startswith(prefix) and SAMPLE in line]


def test_the_sample_photo_is_there_and_small() -> None:
    photo = ROOT / SAMPLE
    assert photo.read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG
    assert photo.stat().st_size < 100_000
    assert photo.name in (ROOT / "samples" / "README.md").read_text()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_readme_quick_start_classifies_the_sample_photo(tiny_model: Path) -> None:
    """The README's curl, Python and command-line calls, run as written against a real
    server (only the URL changes); each answers with the model's labels."""
    curls = readme_commands("curl ")
    assert curls
    assert len(set(curls)) == 1, curls  # the quick start and Docker show the same call
    python = next(block for block in code_blocks(README.read_text(), "python") if SAMPLE in block)
    command = readme_commands("densenet-serve classify")
    assert len(command) == 1, command
    with running(tiny_model) as (_, url):

        def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                argv, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
            )

        curl = shlex.split(curls[0].replace(README_URL, url), comments=True)
        answer = run([*curl, "--fail-with-body", "--silent", "--show-error"])
        client = run([sys.executable, "-c", python.replace(README_URL, url)])
        cli_args = shlex.split(command[0], comments=True)[1:]
        cli = run([sys.executable, "-m", "app.cli", *cli_args, "--url", url])
    assert answer.returncode == 0, answer.stdout + answer.stderr
    body = json.loads(answer.stdout)
    top = body["predictions"][0]["label"]
    assert len(body["predictions"]) == 5
    assert all(p["label"] for p in body["predictions"])
    assert client.returncode == 0, client.stderr
    assert client.stdout.startswith(f"{top} "), client.stdout
    assert cli.returncode == 0, cli.stderr
    assert top in cli.stdout, cli.stdout
