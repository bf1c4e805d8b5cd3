"""`densenet-serve`: run the service, or classify images and list models over its HTTP API.

  densenet-serve serve                      what `python -m app` does (DENSENET_* settings)
  densenet-serve classify PATH... [--url URL] [--model NAME] [--top-k K] [--json]
  densenet-serve models [--url URL] [--json]

classify and models talk to the service at --url (default: $DENSENET_URL, else
http://127.0.0.1:8000) with --api-key (default: $DENSENET_API_KEY, the key the service
itself reads). Results go to stdout, one-line errors to stderr; with more than one file
and a terminal on stderr, a progress bar is drawn there.
The exit codes are EXIT_CODES below, printed by --help.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from app import __version__
from app.client import (
    DEFAULT_TIMEOUT_S,
    DEFAULT_URL,
    AsyncClient,
    Classification,
    Client,
    ClientError,
    ModelInfo,
    ServerUnreachable,
)

_SUMMARY = (__doc__ or "").split("\nThe exit codes")[0]
OK, FILES_FAILED, USAGE, UNREACHABLE, REFUSED = 0, 1, 2, 3, 4
EXIT_CODES = """\
exit codes of classify and models:
  0  every file classified (models: listed)
  1  one or more files not classified: unreadable, or refused by the service (each has
     its own line on stderr, e.g. invalid_image)
  2  usage error
  3  no answer from the service (not running, wrong --url, timed out)
  4  the service refused the request itself, whatever the file: wrong model name,
     missing or wrong API key, --top-k above its limit; nothing more is sent
serve exits as `python -m app` does: 0 after a clean drain; 2 when a DENSENET_* setting
is invalid (a bad value, or settings that contradict each other); 1 when it cannot start
otherwise (a model that cannot be loaded, a provider or precision this machine lacks, a
port in use) or stops on a fatal error.
"""
# Refusals that every file would get alike: stop at the first rather than repeat it.
REQUEST_CODES = frozenset(
    {"unauthorized", "forbidden", "model_not_found", "not_found", "invalid_parameter"}
)
Outcome = Classification | ClientError


class Progress:
    """`[#####.....] 12/40` on one line of `stream`, redrawn in place; off when not enabled."""

    def __init__(self, total: int, stream: TextIO, enabled: bool, width: int = 30) -> None:
        self.total, self.stream, self.enabled, self.width = total, stream, enabled, width
        self.done = 0

    def advance(self) -> None:
        self.done += 1
        self.draw()

    def draw(self) -> None:
        if self.enabled:
            filled = self.width * self.done // self.total
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r[{bar}] {self.done}/{self.total}")
            self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="densenet-serve",
        description=_SUMMARY,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "serve",
        help="run the service (python -m app); configured by DENSENET_* variables",
        description="Run the service exactly as `python -m app` does: the DENSENET_* "
        "environment variables configure it (e.g. DENSENET_MODEL_PATH, DENSENET_PORT); "
        "SIGTERM or Ctrl-C drains it, a second Ctrl-C stops it at once.",
    )
    client = argparse.ArgumentParser(add_help=False)
    client.add_argument(
        "--url",
        default=os.environ.get("DENSENET_URL", DEFAULT_URL),
        help=f"the service (default: $DENSENET_URL, else {DEFAULT_URL})",
    )
    client.add_argument(
        "--api-key",
        default=os.environ.get("DENSENET_API_KEY"),
        help="sent as 'Authorization: Bearer KEY' (default: $DENSENET_API_KEY)",
    )
    client.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help="seconds to wait for each answer (default %(default)g)",
    )
    client.add_argument("--json", action="store_true", help="print JSON on stdout")
    classify = commands.add_parser(
        "classify",
        parents=[client],
        help="classify image files (POST /classify)",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    classify.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    classify.add_argument("--model", help="a served model (default: the default model)")
    classify.add_argument("--model-version", type=_positive, help="default: the latest")
    classify.add_argument("--top-k", type=_positive, help="default: the service's default")
    classify.add_argument(
        "--concurrency", type=_positive, default=4, help="requests in flight (default 4)"
    )
    commands.add_parser(
        "models",
        parents=[client],
        help="list the served models (GET /models)",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def _fail(message: str) -> None:
    print(f"densenet-serve: {message}", file=sys.stderr)


async def _classify_all(args: argparse.Namespace, progress: Progress) -> list[Outcome]:
    """Every file's outcome, in order; printed as soon as those before it are done."""
    limit = asyncio.Semaphore(args.concurrency)
    outcomes: dict[int, Outcome] = {}
    printed = 0

    async def one(client: AsyncClient, index: int, path: Path) -> None:
        nonlocal printed
        async with limit:
            outcomes[index] = await _classify_one(client, path, args)
        progress.advance()
        while not args.json and printed in outcomes:
            progress.clear()
            _print_outcome(args.paths[printed], outcomes[printed])
            printed += 1
            progress.draw()

    async with AsyncClient(args.url, args.api_key, args.timeout) as client:
        try:
            async with asyncio.TaskGroup() as group:
                for index, path in enumerate(args.paths):
                    group.create_task(one(client, index, path))
        except BaseExceptionGroup as failed:  # the first refusal of the whole request
            raise failed.exceptions[0] from None
    return [outcomes[i] for i in range(len(args.paths))]


async def _classify_one(client: AsyncClient, path: Path, args: argparse.Namespace) -> Outcome:
    """A file's classification, or why it has none; a refusal that is not about the file
    (REQUEST_CODES) or no answer at all is raised and ends the run."""
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        return ClientError("unreadable", exc.strerror or str(exc))
    try:
        return await client.classify(
            data, model=args.model, version=args.model_version, top_k=args.top_k
        )
    except ClientError as exc:
        if isinstance(exc, ServerUnreachable) or exc.code in REQUEST_CODES:
            raise
        return exc


def _print_outcome(path: Path, outcome: Outcome) -> None:
    if isinstance(outcome, ClientError):
        status = f" (HTTP {outcome.status})" if outcome.status else ""
        _fail(f"{path}: {outcome.code}: {outcome.message}{status}")
        return
    print(f"{path}  ({outcome.model} v{outcome.version})")
    for p in outcome.predictions:
        print(f"  {p.probability:8.2%}  {p.label}")
    sys.stdout.flush()


def _as_json(path: Path, outcome: Outcome) -> dict[str, object]:
    if isinstance(outcome, ClientError):
        error = {"code": outcome.code, "message": outcome.message, "status": outcome.status}
        return {"path": str(path), "error": error}
    return {"path": str(path), **asdict(outcome)}


def _run_classify(args: argparse.Namespace) -> int:
    progress = Progress(len(args.paths), sys.stderr, len(args.paths) > 1 and sys.stderr.isatty())
    try:
        outcomes = asyncio.run(_classify_all(args, progress))
    finally:
        progress.clear()
    if args.json:
        print(json.dumps([_as_json(p, o) for p, o in zip(args.paths, outcomes, strict=True)]))
    warnings = {w for o in outcomes if isinstance(o, Classification) for w in o.warnings}
    for warning in sorted(warnings):
        _fail(f"warning: {warning}")
    failed = sum(isinstance(o, ClientError) for o in outcomes)
    if failed and not args.json:
        _fail(f"{failed} of {len(outcomes)} file(s) not classified")
    return FILES_FAILED if failed else OK


def _print_models(models: list[ModelInfo]) -> None:
    header = ("MODEL", "VERSION", "DEFAULT", "READY", "WEIGHTS", "PRECISION", "RUNTIME")
    rows = [header] + [
        (
            m.name,
            str(m.version),
            "yes" if m.default else "",
            "yes" if m.ready else "no",
            m.weights,
            m.precision,
            m.runtime,
        )
        for m in models
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _run_models(args: argparse.Namespace) -> int:
    with Client(args.url, args.api_key, args.timeout) as client:
        models = client.models()
    if args.json:
        print(json.dumps([asdict(m) for m in models]))
    else:
        _print_models(models)
    return OK


def main(argv: Sequence[str] | None = None) -> int:
    """The console command; returns its exit code (see the module docstring)."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from app.__main__ import main as serve  # the service's imports only when serving

        return serve()
    try:
        return _run_classify(args) if args.command == "classify" else _run_models(args)
    except ServerUnreachable as exc:
        _fail(f"{exc.message} (is the service running? set --url or DENSENET_URL)")
        return UNREACHABLE
    except ClientError as exc:
        status = f" (HTTP {exc.status})" if exc.status else ""
        _fail(f"{exc.code}: {exc.message}{status}")
        return REFUSED
    except KeyboardInterrupt:
        return 130


def run() -> None:
    """Entry point of the installed `densenet-serve` script."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`densenet-serve classify ... | head`): stop quietly, as a
        # shell tool does, and keep Python from complaining again when it flushes at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141
    sys.exit(code)


if __name__ == "__main__":
    run()
