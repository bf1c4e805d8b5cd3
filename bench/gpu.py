"""``python -m bench gpu``: the GPU run in one go, on a machine with an NVIDIA GPU.

Needs onnxruntime-gpu (``CUDAExecutionProvider``) and a GPU it can use; anywhere else it
stops at once with one line saying what is missing. It exports a seeded random checkpoint
in fp32 and fp16 (``model_export export --precision fp16``), then measures, each in its
own process where it can:

1. engine ceiling, the service's own CUDA engine (IOBinding, preallocated buffers) on
   pre-made tensors, fp32 and fp16, by batch size, for each cuDNN algorithm search setting;
2. beside it, what the engine does not offer (bench.gpu_variants): CUDA graphs, and fp32
   with TF32 off (the provider options say whether fp32 uses TF32);
3. the decode-bound ceiling of this machine's CPUs, web and 12 MP photos (bench.gpu_decode);
4. the service over HTTP (``python -m app`` with ``DENSENET_PRECISION=fp32|fp16``) at
   1/16/64/256 clients on web photos and 16/64 on 12 MP photos, with its CPU per image;
5. agreement of CUDA fp32 and CUDA fp16 with ONNX Runtime's CPU fp32 (the exact reference)
   on 256 inputs from the bundled photos.

Writes ``bench/results/NAME.{json,md,png}`` (NAME defaults to ``gpu-reference``).
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
from bench.photos import write_photos
from bench.plan import Mode, Plan, Step

ALGO_SEARCHES = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
PRECISIONS = ("fp32", "fp16")
CUDA_PROVIDERS = "CUDAExecutionProvider,CPUExecutionProvider"
RESULTS_DIR = Path(__file__).parent / "results"


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
    parser.add_argument("--name", default="gpu-reference", help="results file stem")
    parser.add_argument("--arch", default="densenet121")
    parser.add_argument("--batch-sizes", type=_list(int), default=(1, 2, 4, 8, 16, 32, 64))
    parser.add_argument("--concurrencies", type=_list(int), default=(1, 16, 64, 256))
    parser.add_argument(
        "--phone-concurrencies", type=_list(int), default=(16, 64), help="12 MP photos"
    )
    parser.add_argument(
        "--algo-searches",
        type=_list(str, ALGO_SEARCHES),
        default=ALGO_SEARCHES,
        help="DENSENET_CUDNN_CONV_ALGO_SEARCH values for the engine ceiling",
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="per engine batch size")
    parser.add_argument("--duration", type=float, default=12.0, help="per HTTP load step")
    parser.add_argument("--max-batch-size", type=int, default=32, help="the service's")
    parser.add_argument("--agreement-inputs", type=int, default=256)
    parser.add_argument("--decode-seconds", type=float, default=5.0, help="per photo size")
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
        warmup_s=3.0,
        duration_s=args.duration,
        overload_factor=2.0,
        overload_s=0.0,
        recovery_s=0.0,
        ready_timeout_s=900.0,  # EXHAUSTIVE cuDNN search at every batch size takes a while
        quiet_wait_s=0.0,
        patience_s=0.0,
        service_env={
            "DENSENET_PROVIDERS": CUDA_PROVIDERS,
            "DENSENET_MAX_BATCH_SIZE": str(args.max_batch_size),
            "DENSENET_MAX_QUEUE_SIZE": str(8 * args.max_batch_size),
        },
    )


def export_fp16(arch: str, checkpoint: Path, output: Path) -> Path:
    if not output.exists():
        command = ["-m", "model_export", "export", "--arch", arch, "--checkpoint", str(checkpoint)]
        command += ["--precision", "fp16", "--output", str(output)]
        subprocess.run([sys.executable, *command], check=True)
    return output


def engines(models: dict[str, Path], plan: Plan, algos: tuple[str, ...], say: Any) -> list[Any]:
    """Engine ceiling for every (cuDNN search, precision), each in its own process."""
    measured = []
    for algo in algos:
        for precision, model in models.items():
            say(f"engine ceiling {precision}, cudnn_conv_algo_search={algo}")
            result = _engine_ceiling(model, precision, plan, algo)
            measured.append({"precision": precision, "algo_search": algo, **result})
            say(f"  best {result['throughput']:.0f} img/s at batch {result['best_batch_size']}")
    return measured


def _engine_ceiling(model: Path, precision: str, plan: Plan, algo: str) -> dict[str, Any]:
    sizes = ",".join(str(s) for s in plan.engine_batch_sizes)
    command = ["-m", "bench.engine_ceiling", "--model", str(model), "--precision", precision]
    command += ["--batch-sizes", sizes, "--seconds", str(plan.engine_seconds)]
    env = {**os.environ, **plan.service_env, "DENSENET_CUDNN_CONV_ALGO_SEARCH": algo}
    done = subprocess.run(
        [sys.executable, *command], check=True, capture_output=True, text=True, env=env
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _json_of(module: str, *arguments: str) -> Any:
    command = [sys.executable, "-m", module, *arguments]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def variants(models: dict[str, Path], plan: Plan, say: Any) -> dict[str, Any]:
    """CUDA graphs and TF32 off, per precision, each in its own process."""
    sizes = ",".join(str(s) for s in plan.engine_batch_sizes)
    measured = {}
    for precision, model in models.items():
        say(f"CUDA graphs and TF32, {precision}")
        arguments = ("--model", str(model), "--batch-sizes", sizes)
        try:
            measured[precision] = _json_of(
                "bench.gpu_variants", *arguments, "--seconds", str(plan.engine_seconds)
            )
        except subprocess.CalledProcessError as exc:  # e.g. a crash in graph capture
            error = {"batch_sizes": [], "error": f"exit {exc.returncode}: {exc.stderr[-300:]}"}
            measured[precision] = {"default": error}
    return measured


def decode_ceilings(files: dict[str, Path], seconds: float, say: Any) -> list[Any]:
    """Photos/s the CPUs preprocess with no model: the most the service can be fed."""
    found = []
    for size in ("web", "phone"):
        found.append(
            _json_of("bench.gpu_decode", "--photos", str(files[size]), "--seconds", str(seconds))
        )
        say(f"decode ceiling {size}: {found[-1]['images_per_s']:.0f} img/s")
    return found


def services(models: dict[str, Path], files: dict[str, Path], plan: Plan) -> dict[str, Any]:
    """The service over HTTP in each precision, web then 12 MP photos at each concurrency."""
    steps = tuple(Step("web", c) for c in plan.concurrencies)
    steps += tuple(Step("phone", c) for c in plan.phone_concurrencies)
    progress = runner.Progress(len(models) * (1 + len(steps)))
    patience = runner.Patience(0.0)
    results = {}
    for precision, model in models.items():
        env = {**plan.service_env, "DENSENET_PRECISION": precision}
        mode = Mode(f"service {precision}", "service", env, steps)
        mode_files = {**files, "model": model}
        results[mode.name] = runner.run_mode(mode, mode_files, plan, 0, progress, patience)
    return results


def agreement(models: dict[str, Path], inputs: int) -> dict[str, Any]:
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
    report = {}
    for precision, model in models.items():
        candidate = runner_for(model, precision, CUDA_PROVIDERS)
        result = compare(reference, candidate, models["fp32"], photos, inputs, seed=0)
        report[f"cuda {precision}"] = result["agreement"]
    return report


def run(args: argparse.Namespace) -> list[Path]:
    """Everything, then the results files; GpuUnavailable first where there is no GPU."""
    gpu = require_gpu()
    started = time.monotonic()
    plan = plan_for(args)
    workdir = args.results_dir / "tmp" / args.name
    workdir.mkdir(parents=True, exist_ok=True)
    say = runner.Progress(0)
    say(f"GPU: {gpu}; exporting {plan.arch} in fp32 and fp16")
    checkpoint, fp32 = runner.prepare_model(plan.arch, 0, workdir)
    models = {"fp32": fp32, "fp16": export_fp16(plan.arch, checkpoint, workdir / "fp16.onnx")}
    web, phone = workdir / "photos" / "web", workdir / "photos" / "phone"
    write_photos(web, "web", None)
    write_photos(phone, "phone", None)
    files = {"checkpoint": checkpoint, "work": workdir, "web": web, "phone": phone}
    result = {
        "name": args.name,
        "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
        "gpu": gpu,
        "machine": machine.describe(),
        "model": {"arch": plan.arch, "weights": "random, seed 0"},
        "plan": dataclasses.asdict(plan),
        "engines": engines(models, plan, tuple(args.algo_searches), say),
        "variants": variants(models, plan, say),
        "decode": decode_ceilings(files, args.decode_seconds, say),
        "modes": services(models, files, plan),
        "agreement": agreement(models, args.agreement_inputs),
    }
    result["duration_s"] = time.monotonic() - started
    return gpu_report.write(result, args.results_dir)
