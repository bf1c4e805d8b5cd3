"""The shape of app/ (../shared/STYLE.md), read from the imports: HTTP only in the web
folder, the two HTTP fronts side by side, nothing below the web layer reaching up."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"
HTTP_PACKAGES = ("fastapi", "starlette", "uvicorn", "fastapi_offline")


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def modules(under: Path) -> dict[str, set[str]]:
    return {str(p.relative_to(APP.parent)): imports(p) for p in sorted(under.rglob("*.py"))}


def test_http_is_imported_only_under_the_web_folder() -> None:
    outside = {
        name: sorted(i for i in found if i.split(".")[0] in HTTP_PACKAGES)
        for name, found in modules(APP).items()
        if not name.startswith("app/web/")
    }
    assert {name: found for name, found in outside.items() if found} == {}


FRONTS = ("v1", "v2", "grpc")


def test_no_front_imports_another() -> None:
    for front in FRONTS:
        for name, found in modules(APP / "web" / front).items():
            for other in set(FRONTS) - {front}:
                assert not any(i.startswith(f"app.web.{other}") for i in found), name


def test_grpc_is_imported_only_by_its_front() -> None:
    for name, found in modules(APP).items():
        if not name.startswith("app/web/grpc/") and name != "app/web/server.py":
            assert not any(i.split(".")[0] in ("grpc", "google") for i in found), name


def test_nothing_below_the_web_layer_imports_it() -> None:
    for name, found in modules(APP).items():
        if not name.startswith("app/web/") and name != "app/__main__.py":
            assert not any(i.startswith("app.web") for i in found), name
