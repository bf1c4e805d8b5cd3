"""``python -m bench gpu``: the GPU run in one go, on a machine with an NVIDIA GPU.

Needs onnxruntime-gpu (``CUDAExecutionProvider``) and a GPU it can use; anywhere else it
stops at once with one line saying what is missing. It exports a seeded random checkpoint
in fp32 and fp16 (``model_export export --precision fp16``), then measures, each in its
own process where it can, most wanted first:

1. engine ceiling, the service's own CUDA engine (IOBinding, preallocated buffers) on
   pre-made tensors, fp32 and fp16, by batch size, for each cuDNN algorithm search setting;
2. the decode-bound ceiling of this machine's CPUs, web and 12 MP photos (bench.gpu_decode);
3. the service over HTTP (``python -m app`` with ``DENSENET_PRECISION=fp32|fp16``, cuDNN
   search HEURISTIC: its warm-up tunes every batch size) at 1/16/64/256 clients on web
   photos and 16/64 on 12 MP photos, with its CPU per image;
4. agreement of CUDA fp32 and CUDA fp16 with ONNX Runtime's CPU fp32 (the exact reference)
   on 256 inputs from the bundled photos;
5. beside the engine, what it does not offer (bench.gpu_variants): fp32 with TF32 off (the
   provider options say whether fp32 uses TF32), and CUDA graphs in a process of their own.

The defaults fit a budget of 6 minutes (``--budget-s``) on one H100 with 16 CPU cores.
Writes ``bench/results/NAME.{json,md,png}`` (NAME defaults to ``gpu-reference``) from the
start and after each phase (bench/gpu_phases.py); a run cut short by its budget, SIGINT or
SIGTERM leaves a report marked partial, saying what is missing, and exits non-zero.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import gpu_report, machine, runner
from bench.gpu_phases import Budget, BudgetSpent, Phases, StepFailed, Stopped, run_python
from bench.photos import write_photos
from bench.plan import Mode, Plan, Step

ALGO_SEARCHES = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
PRECISIONS = ("fp32", "fp16")
CUDA_PROVIDERS = "CUDAExecutionProvider,CPUExecutionProvider"
RESULTS_DIR = Path(__file__).parent / "results"
# Each step's own limit (the budget may cut it shorter), so that one stuck step cannot
# take the whole run: an export, one engine-ceiling process, one gpu_variants process, and
# a service's start (HEURISTIC search at every batch size up to the service's largest).
EXPORT_TIMEOUT_S = 150.0
ENGINE_TIMEOUT_S = 90.0
VARIANTS_TIMEOUT_S = 60.0
SERVICE_READY_TIMEOUT_S = 120.0


class GpuUnavailable(Exception):
    """No GPU to measure; the message says what is missing (``main`` exits 2 with it)."""


def _list(kind: type, allowed: tuple[str, ...] | None = None) -> Any:
    def parse(text: str) -> tuple[Any, ...]:
        try:
            values = tuple(kind(part.strip()) for part in text.split(",") if part.strip())
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc
        bad = [v for v in values if allowed is not None and v not in allowed]
        if not values or bad:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {allowed}")
        return values

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Defaults sized for about 6 minutes on one H100 with 16 CPU cores (docs/gpu.md)."""
    parser.add_argument("--name", default="gpu-reference", help="results file stem")
    parser.add_argument("--arch", default="densenet121")
    parser.add_argument("--batch-sizes", type=_list(int), default=(1, 8, 32, 64, 128))
    parser.add_argument("--concurrencies", type=_list(int), default=(1, 16, 64, 256))
    parser.add_argument(
        "--phone-concurrencies", type=_list(int), default=(16, 64), help="12 MP photos"
    )
    parser.add_argument(
        "--algo-searches",
        type=_list(str, ALGO_SEARCHES),
        default=("EXHAUSTIVE", "HEURISTIC"),
        help="DENSENET_CUDNN_CONV_ALGO_SEARCH values for the engine ceiling",
    )
    parser.add_argument(
        "--service-algo-search",
        choices=ALGO_SEARCHES,
        default="HEURISTIC",
        help="the service's: its warm-up tunes every batch size up to --max-batch-size, "
        "which EXHAUSTIVE makes take minutes",
    )
    parser.add_argument("--seconds", type=float, default=1.5, help="per engine batch size")
    parser.add_argument(
        "--variant-batch-sizes", type=_list(int), default=(1, 32, 128), help="CUDA graphs, TF32"
    )
    parser.add_argument("--variant-seconds", type=float, default=1.0, help="per batch size")
    parser.add_argument("--warmup", type=float, default=2.0, help="before each HTTP load step")
    parser.add_argument("--duration", type=float, default=5.0, help="per HTTP load step")
    parser.add_argument("--max-batch-size", type=int, default=32, help="the service's")
    parser.add_argument("--agreement-inputs", type=int, default=256)
    parser.add_argument("--decode-seconds", type=float, default=4.0, help="per photo size")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=360.0,
        help="stop here, keeping what is measured (0: no limit)",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)


def require_gpu() -> str:
    """The GPU's name, or GpuUnavailable saying what is missing."""
    import onnxruntime as ort

    providers = ort.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        raise GpuUnavailable(
            f"needs an NVIDIA GPU and onnxruntime-gpu; this onnxruntime {ort.__version__} "
            f"offers {', '.join(providers)} (pip install onnxruntime-gpu, on a GPU machine)"
        )
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise GpuUnavailable(f"onnxruntime-gpu is installed but nvidia-smi fails: {exc}") from exc
    return done.stdout.strip()


def plan_for(args: argparse.Namespace) -> Plan:
    return Plan(
        arch=args.arch,
        photos_per_size=None,
        engine_batch_sizes=tuple(args.batch_sizes),
        engine_seconds=args.seconds,
        concurrencies=tuple(args.concurrencies),
        phone_concurrencies=tuple(args.phone_concurrencies),
        warmup_s=args.warmup,
        duration_s=args.duration,
        overload_factor=2.0,
        overload_s=0.0,
        recovery_s=0.0,
        ready_timeout_s=SERVICE_READY_TIMEOUT_S,
        quiet_wait_s=0.0,
        patience_s=0.0,
        service_env={
            "DENSENET_PROVIDERS": CUDA_PROVIDERS,
            "DENSENET_MAX_BATCH_SIZE": str(args.max_batch_size),
            "DENSENET_MAX_QUEUE_SIZE": str(8 * args.max_batch_size),
            "DENSENET_CUDNN_CONV_ALGO_SEARCH": args.service_algo_search,
        },
    )


def export_models(arch: str, workdir: Path, budget: Budget) -> tuple[Path, dict[str, Path]]:
    """A seeded random checkpoint, exported in fp32 and fp16 (reused when already there)."""
    import torch

    from model_export.models import build

    checkpoint = workdir / f"{arch}-seed0.pt"
    if not checkpoint.exists():
        torch.manual_seed(0)
        torch.save(build(arch).state_dict(), checkpoint)
    models = {}
    for precision in PRECISIONS:
        output = workdir / f"{arch}-seed0-{precision}.onnx"
        if not output.exists():
            partial = output.with_suffix(".partial.onnx")  # a cut-short export is not reused
            command = ["-m", "model_export", "export", "--arch", arch, "--checkpoint"]
            command += [str(checkpoint), "--precision", precision, "--output", str(partial)]
            run_python(command, budget.timeout(EXPORT_TIMEOUT_S))
            partial.replace(output)
        models[precision] = output
    return checkpoint, models


def engines(
    models: dict[str, Path],
    plan: Plan,
    algos: tuple[str, ...],
    found: list[Any],
    budget: Budget,
    say: Any,
) -> list[str]:
    """Engine ceiling for every (cuDNN search, precision), each in its own process."""
    failed = []
    for algo in algos:
        for precision, model in models.items():
            say(f"engine ceiling {precision}, cudnn_conv_algo_search={algo}")
            entry: dict[str, Any] = {"precision": precision, "algo_search": algo}
            try:
                entry.update(_engine_ceiling(model, precision, plan, algo, budget))
                say(f"  best {entry['throughput']:.0f} img/s at batch {entry['best_batch_size']}")
            except StepFailed as exc:
                entry.update(batch_sizes=[], throughput=None, best_batch_size=None, error=str(exc))
                failed.append(f"engine {precision} {algo}: {exc}")
                say(f"  {exc}")
            found.append(entry)
    return failed


def _engine_ceiling(
    model: Path, precision: str, plan: Plan, algo: str, budget: Budget
) -> dict[str, Any]:
    sizes = ",".join(str(s) for s in plan.engine_batch_sizes)
    command = ["-m", "bench.engine_ceiling", "--model", str(model), "--precision", precision]
    command += ["--batch-sizes", sizes, "--seconds", str(plan.engine_seconds)]
    env = {**os.environ, **plan.service_env, "DENSENET_CUDNN_CONV_ALGO_SEARCH": algo}
    result: dict[str, Any] = json.loads(run_python(command, budget.timeout(ENGINE_TIMEOUT_S), env))
    return result


def variants(
    models: dict[str, Path],
    args: argparse.Namespace,
    found: dict[str, Any],
    budget: Budget,
    say: Any,
) -> list[str]:
    """TF32 off beside the defaults, then CUDA graphs alone (a crash in graph capture loses
    only those), per precision, each in its own process."""
    sizes = ",".join(str(s) for s in args.variant_batch_sizes)
    failed = []
    for precision, model in models.items():
        found[precision] = {}
        for settings in ("default,no_tf32", "cuda_graph"):
            say(f"{settings}, {precision}")
            command = ["-m", "bench.gpu_variants", "--model", str(model), "--batch-sizes", sizes]
            command += ["--seconds", str(args.variant_seconds), "--settings", settings]
            try:
                found[precision].update(
                    json.loads(run_python(command, budget.timeout(VARIANTS_TIMEOUT_S)))
                )
            except StepFailed as exc:  # e.g. a crash in graph capture
                for name in settings.split(","):
                    found[precision][name] = {"batch_sizes": [], "error": str(exc)}
                failed.append(f"{settings} {precision}: {exc}")
    return failed


def decode_ceilings(
    files: dict[str, Path], seconds: float, found: list[Any], budget: Budget, say: Any
) -> list[str]:
    """Photos/s the CPUs preprocess with no model: the most the service can be fed."""
    failed = []
    for size in ("web", "phone"):
        command = ["-m", "bench.gpu_decode", "--photos", str(files[size])]
        command += ["--seconds", str(seconds)]
        try:
            found.append(json.loads(run_python(command, budget.timeout(seconds + 60))))
            say(f"decode ceiling {size}: {found[-1]['images_per_s']:.0f} img/s")
        except StepFailed as exc:
            found.append({"photos": size, "error": str(exc)})
            failed.append(f"decode {size}: {exc}")
    return failed


def services(
    models: dict[str, Path],
    files: dict[str, Path],
    plan: Plan,
    found: dict[str, Any],
    budget: Budget,
) -> list[str]:
    """The service over HTTP in each precision, web then 12 MP photos at each concurrency."""
    steps = tuple(Step("web", c) for c in plan.concurrencies)
    steps += tuple(Step("phone", c) for c in plan.phone_concurrencies)
    progress = runner.Progress(len(models) * (1 + len(steps)))
    patience = runner.Patience(0.0)
    failed = []
    for precision, model in models.items():
        env = {**plan.service_env, "DENSENET_PRECISION": precision}
        mode = Mode(f"service {precision}", "service", env, steps)
        mode_files = {**files, "model": model}
        # The ready wait is the only limit run_mode has beside its load steps' own.
        limited = dataclasses.replace(plan, ready_timeout_s=budget.timeout(plan.ready_timeout_s))
        try:
            found[mode.name] = runner.run_mode(mode, mode_files, limited, 0, progress, patience)
        except Exception as exc:  # a server that does not start or a step that fails
            error = f"{type(exc).__name__}: {exc}"[:500]
            found[mode.name] = {"env": env, "cold_start_s": None, "steps": [], "error": error}
            failed.append(f"{mode.name}: {error}")
    return failed


def agreement(models: dict[str, Path], inputs: int, found: dict[str, Any]) -> list[str]:
    """CUDA fp32 and CUDA fp16 against ONNX Runtime's CPU fp32, on the bundled photos."""
    from app.config import Settings
    from app.repository import default_engine_loader
    from model_export.compare import compare
    from model_export.photos import bundled_photo_paths
    from model_export.runtimes import Runner

    def runner_for(path: Path, precision: str, providers: str) -> Runner:
        settings = Settings(model_path=path, precision=precision, providers=providers)  # type: ignore[arg-type]
        engine = default_engine_loader(settings)(path)
        return Runner("onnxruntime", engine.precision, engine.run, {"providers": engine.providers})

    reference = runner_for(models["fp32"], "fp32", "CPUExecutionProvider")
    photos = bundled_photo_paths()
    for precision, model in models.items():
        candidate = runner_for(model, precision, CUDA_PROVIDERS)
        result = compare(reference, candidate, models["fp32"], photos, inputs, seed=0)
        found[f"cuda {precision}"] = result["agreement"]
    return []


def _empty_result(args: argparse.Namespace, gpu: str, plan: Plan) -> dict[str, Any]:
    """What the run is, and an empty place for each phase's results."""
    return {
        "name": args.name,
        "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
        "gpu": gpu,
        "machine": machine.describe(),
        "model": {"arch": plan.arch, "weights": "random, seed 0"},
        "plan": dataclasses.asdict(plan),
        "budget_s": args.budget_s,
        "engines": [],
        "decode": [],
        "modes": {},
        "agreement": {},
        "variants": {},
    }


def run(args: argparse.Namespace) -> list[Path]:
    """Every phase in turn, the report written after each; GpuUnavailable first where there
    is no GPU. Exits non-zero (the report marked partial) if a phase did not finish."""
    gpu = require_gpu()
    plan = plan_for(args)
    workdir = args.results_dir / "tmp" / args.name
    workdir.mkdir(parents=True, exist_ok=True)
    say = runner.Progress(0)
    result = _empty_result(args, gpu, plan)
    files: dict[str, Path] = {"work": workdir}
    models: dict[str, Path] = {}
    budget = Budget(args.budget_s)

    def prepare() -> list[str]:
        say(f"GPU: {gpu}; exporting {plan.arch} in fp32 and fp16")
        files["checkpoint"], exported = export_models(plan.arch, workdir, budget)
        models.update(exported)
        for size in ("web", "phone"):
            files[size] = workdir / "photos" / size
            write_photos(files[size], size, None)
        return []

    # Most wanted first: a run cut short loses the least (CUDA graphs come last).
    phases = {
        "export": prepare,
        "engines": lambda: engines(
            models, plan, tuple(args.algo_searches), result["engines"], budget, say
        ),
        "decode": lambda: decode_ceilings(
            files, args.decode_seconds, result["decode"], budget, say
        ),
        "services": lambda: services(models, files, plan, result["modes"], budget),
        "agreement": lambda: agreement(models, args.agreement_inputs, result["agreement"]),
        "variants": lambda: variants(models, args, result["variants"], budget, say),
    }

    def save(with_plot: bool) -> None:
        gpu_report.write(result, args.results_dir, with_plot)

    stopped = None
    steps = Phases(list(phases), result, save, budget)
    try:
        with steps:
            for name, phase in phases.items():
                if name != "export" and result["phases"]["export"]["status"] != "done":
                    break  # nothing to measure without the models
                steps.run(name, phase)
    except BudgetSpent:
        pass
    except Stopped as exc:
        stopped = exc
    try:
        paths = gpu_report.write(result, args.results_dir)
    finally:
        steps.release()
    if result["partial"]:
        print("wrote " + ", ".join(str(p) for p in paths))
        missing = ", ".join(f"{n} ({result['phases'][n]['status']})" for n in result["missing"])
        print(f"python -m bench gpu: a partial report; missing: {missing}", file=sys.stderr)
        raise SystemExit(stopped.exit_code if stopped else 1)
    return paths
