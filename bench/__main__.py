"""``python -m bench run --name NAME [--smoke]``: the service's benchmark harness;
``python -m bench gpu``: the GPU run (bench/gpu.py).

Exports a seeded random checkpoint of the model to ONNX, then measures, one after another
and each in its own process: the engine-only ceiling, the service (defaults), the service
with max batch size 1, the service with the other JPEG decode setting on large photos, and
a PyTorch-eager FastAPI baseline. Load comes from a separate process. Writes
``bench/results/NAME.{json,md,png}``. ``python -m bench report NAME`` rewrites the Markdown
and plot from the JSON. See bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

from bench import gpu, report, runner
from bench.plan import MODE_KEYS, REFERENCE, SMOKE, Plan

RESULTS_DIR = Path(__file__).parent / "results"


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.startswith("DENSENET_"):
        raise argparse.ArgumentTypeError(f"expected DENSENET_NAME=VALUE, got {text!r}")
    return key, value


def customize(plan: Plan, args: argparse.Namespace) -> Plan:
    """The preset plan with the command line's changes."""
    only = tuple(args.modes.split(",")) if args.modes else ()
    unknown = set(only) - set(MODE_KEYS)
    if unknown:
        raise SystemExit(f"unknown --modes {', '.join(sorted(unknown))}; choose from {MODE_KEYS}")
    concurrencies = plan.concurrencies
    if args.concurrencies:
        concurrencies = tuple(int(c) for c in args.concurrencies.split(","))
    repository, model = _repository_choice(args)
    return dataclasses.replace(
        plan,
        arch=args.arch or plan.arch,
        service_env=dict(args.service_env),
        only=only,
        concurrencies=concurrencies,
        overload_s=0.0 if args.no_overload else plan.overload_s,
        precisions=tuple(args.precisions.split(",")) if args.precisions else (),
        repository=repository,
        model=model,
    )


def _repository_choice(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """--repository DIR --model NAME: serve DIR with NAME as the default model."""
    if args.repository is None:
        if args.model is not None:
            raise SystemExit("--model needs --repository")
        return None, None
    if args.model is None:
        raise SystemExit("--repository needs --model NAME (the model to measure)")
    if "baseline" in (args.modes or "").split(","):
        raise SystemExit("the baseline mode needs a checkpoint; it cannot run on --repository")
    return str(args.repository.resolve()), args.model


def _needs_the_dev_environment() -> None:
    """A run exports its models (torch) and draws plots of bundled photos: say so up front
    rather than fail in a subprocess after `make serve`'s service-only install."""
    missing = [m for m in ("torch", "matplotlib", "skimage") if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(
            f"python -m bench run needs {', '.join(missing)}, which the service alone does not "
            "install: run it in the dev environment (make install-dev, or "
            "pip install -e '.[export,dev]')"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the harness and write the results")
    run.add_argument("--name", default="latest", help="results file stem (default: latest)")
    run.add_argument("--smoke", action="store_true", help="tiny model, a few seconds per mode")
    run.add_argument("--arch", help="override the plan's model (e.g. densenet-tiny)")
    run.add_argument(
        "--service-env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="DENSENET_X=V",
        help="extra service setting, for every service mode",
    )
    run.add_argument(
        "--modes", help=f"comma-separated subset of {','.join(MODE_KEYS)} (engine always runs)"
    )
    run.add_argument("--concurrencies", help="closed-loop concurrencies, e.g. 1,16")
    run.add_argument("--no-overload", action="store_true", help="skip the open-loop step")
    run.add_argument(
        "--precisions",
        help="DENSENET_PRECISION values side by side, e.g. fp32,bf16: an engine ceiling and a "
        "service mode (web photos) for each, instead of the usual modes",
    )
    run.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    run.add_argument("--repository", type=Path, help="serve this model repository")
    run.add_argument("--model", help="with --repository: the model to measure")
    rep = commands.add_parser("report", help="rewrite NAME.md and NAME.png from NAME.json")
    rep.add_argument("name")
    rep.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    gpu.add_arguments(commands.add_parser("gpu", help="the GPU run (bench/gpu.py)"))
    args = parser.parse_args(argv)
    if args.command == "gpu":
        try:
            paths = gpu.run(args)
        except gpu.GpuUnavailable as exc:
            print(f"python -m bench gpu: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    elif args.command == "report":
        result = json.loads((args.results_dir / f"{args.name}.json").read_text())
        paths = report.write(result, args.results_dir)
    else:
        _needs_the_dev_environment()
        plan = SMOKE if args.smoke else REFERENCE
        plan = customize(plan, args)
        paths = report.write(runner.run(plan, args.name, args.results_dir), args.results_dir)
        print(report.markdown(json.loads(paths[0].read_text())))
    print("wrote " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
