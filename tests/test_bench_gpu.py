"""`python -m bench gpu`: what of it runs without a GPU. Its arguments, its report on
synthetic numbers, and its refusal (one clear line, exit 2) where there is no GPU."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest

from bench import gpu, gpu_report

ROOT = Path(__file__).resolve().parent.parent
no_gpu = pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="this machine has a GPU"
)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    gpu.add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_cover_the_whole_run_within_its_budget() -> None:
    args = parse()
    assert args.name == "gpu-reference"
    assert args.batch_sizes == (1, 8, 32, 64, 128)
    assert args.concurrencies == (1, 16, 64, 256)
    assert args.phone_concurrencies == (16, 64)
    assert args.algo_searches == ("EXHAUSTIVE", "HEURISTIC")
    assert args.budget_s == 360
    plan = gpu.plan_for(args)
    assert plan.phone_concurrencies == (16, 64)
    assert plan.service_env["DENSENET_PROVIDERS"] == "CUDAExecutionProvider,CPUExecutionProvider"
    assert plan.service_env["DENSENET_MAX_BATCH_SIZE"] == "32"
    # The service's warm-up tunes every batch size 1..32: HEURISTIC, not EXHAUSTIVE.
    assert plan.service_env["DENSENET_CUDNN_CONV_ALGO_SEARCH"] == "HEURISTIC"
    assert plan.engine_batch_sizes == (1, 8, 32, 64, 128)
    assert plan.ready_timeout_s <= 120


def test_arguments_are_parsed_and_checked(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("--batch-sizes", "1,8", "--concurrencies", "4", "--algo-searches", "HEURISTIC")
    assert (args.batch_sizes, args.concurrencies, args.algo_searches) == (
        (1, 8),
        (4,),
        ("HEURISTIC",),
    )
    for bad in (["--algo-searches", "FASTEST"], ["--batch-sizes", "one"], ["--concurrencies", ""]):
        with pytest.raises(SystemExit):
            parse(*bad)
    assert "expected a comma-separated list" in capsys.readouterr().err


@no_gpu
def test_refuses_without_a_gpu_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "gpu", "--results-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "needs an NVIDIA GPU and onnxruntime-gpu" in lines[0]
    assert "CPUExecutionProvider" in lines[0]
    assert not list(tmp_path.iterdir())  # nothing exported, nothing written


def engine(precision: str, algo: str, scale: float) -> dict[str, Any]:
    sizes = [1, 8, 32]
    return {
        "precision": precision,
        "algo_search": algo,
        "batch_sizes": [
            {"batch_size": s, "throughput": scale * s / (1 + s / 16), "latency_ms": {"p50": 1.5}}
            for s in sizes
        ],
        "best_batch_size": 32,
        "throughput": scale * 32 / 3,
        "batch1_latency_ms": {"p50": 1.25},
    }


def synthetic() -> dict[str, Any]:
    step = {
        "images": "web",
        "concurrency": 16,
        "throughput": 812.5,
        "latency_ms": {"p50": 18.0, "p99": 41.0},
        "metrics": {"mean_batch_size": 15.5},
        "status_counts": {"200": 9750},
        "server_cpu_cores": 1.42,
        "server_cpu_ms_per_image": 1.75,
    }
    variant = {
        "batch_sizes": [{"batch_size": 8, "throughput": 2000.0}],
        "provider_options": {"use_tf32": "1"},
    }
    agreement = {
        "inputs": 256,
        "top1_agreement": 0.99609375,
        "top1_disagreements": 1,
        "top1_agreement_confident": 1.0,
        "confident_inputs": 93,
        "top5_overlap": 0.9921875,
        "max_probability_diff": 0.0123,
        "max_logit_diff": 0.0456,
    }
    return {
        "name": "gpu-synthetic",
        "created": "2030-01-01 00:00:00 +0000",
        "command": "python -m bench gpu --name gpu-synthetic",
        "gpu": "NVIDIA H100 80GB HBM3, 81559 MiB, 560.35",
        "machine": {"cpu": {"model": "Test CPU", "flags": []}, "cpus_available": 16},
        "model": {"arch": "densenet121", "weights": "random, seed 0"},
        "engines": [engine("fp32", "EXHAUSTIVE", 100), engine("fp16", "EXHAUSTIVE", 250)],
        "variants": {
            "fp32": {
                "default": variant,
                "no_tf32": {**variant, "provider_options": {"use_tf32": "0"}},
                "cuda_graph": {"batch_sizes": [], "error": "RuntimeError: capture failed"},
                "tf32_effect": {"max_abs_logit_diff": 0.0031, "same_top1": 1.0},
            }
        },
        "decode": [
            {"photos": "web", "processes": 16, "images_per_s": 1600.0, "cpu_ms_per_image": 10.0}
        ],
        "modes": {"service fp16": {"cold_start_s": 21.5, "steps": [step]}},
        "agreement": {"cuda fp16": agreement},
        "duration_s": 600.0,
    }


def test_report_on_synthetic_numbers(tmp_path: Path) -> None:
    paths = gpu_report.write(synthetic(), tmp_path)
    assert [p.name for p in paths] == [
        "gpu-synthetic.json",
        "gpu-synthetic.md",
        "gpu-synthetic.png",
    ]
    assert json.loads(paths[0].read_text())["gpu"].startswith("NVIDIA H100")
    text = paths[1].read_text()
    assert "| fp16 | EXHAUSTIVE | 235 | 1333 | 2667 | 2667 (batch 32) | 1.25 |" in text
    assert "| fp32 | EXHAUSTIVE | 94 | 533 | 1067 | 1067 (batch 32) | 1.25 |" in text
    service_row = (
        "| service fp16 | web | 16 | 812.5 | 18.0 | 41.0 | 15.50 | 200: 9750 | 1.42 | 1.75 | 21.5 |"
    )
    assert service_row in text
    assert "| fp32 | default | 8: 2000 | use_tf32=1 |" in text
    assert "| fp32 | no_tf32 | 8: 2000 | use_tf32=0 |" in text
    assert "| fp32 | cuda_graph | - | RuntimeError: capture failed |" in text
    assert "| fp32 | TF32 on vs off | same top-1 100.0% | max logit diff 0.0031 |" in text
    # 812.5 img/s against the fp16 ceiling 2667: below the 0.8x target, and it says so.
    assert (
        "0.30x the engine ceiling 2667 img/s (EXHAUSTIVE, batch 32; target >= 0.8x: NOT met)"
        in text
    )
    assert "Partial report" not in text
    assert "web photos 812 img/s = 0.51x what 16 processes decode (1600 img/s" in text
    assert "| cuda fp16 | 99.61% (255/256) | 100.00% of 93 | 99.22% | 0.012 | 0.0456 |" in text
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[2].stat().st_size > 10_000


def test_the_target_compares_with_the_engine_at_the_services_settings() -> None:
    result = synthetic()
    result["engines"].append(engine("fp16", "HEURISTIC", 200))
    for measured in result["engines"][-1]["batch_sizes"]:
        measured["batch_size"] *= 4  # 4, 32, 128: only 4 and 32 fit the service's batches
    result["modes"]["service fp16"]["env"] = {
        "DENSENET_CUDNN_CONV_ALGO_SEARCH": "HEURISTIC",
        "DENSENET_MAX_BATCH_SIZE": "32",
    }
    text = gpu_report.markdown(result)
    # HEURISTIC at batch 32 (the 8-image row): 200 * 8 / 1.5 = 1067 img/s.
    assert "0.76x the engine ceiling 1067 img/s (HEURISTIC, batch 32; target" in text


def test_a_partial_report_says_what_is_missing(tmp_path: Path) -> None:
    result = synthetic()
    result["engines"][1] = {
        "precision": "fp16",
        "algo_search": "EXHAUSTIVE",
        "batch_sizes": [],
        "throughput": None,
        "best_batch_size": None,
        "error": "timed out after 90 s",
    }
    result["modes"]["service fp32"] = {
        "env": {},
        "cold_start_s": None,
        "steps": [],
        "error": "RuntimeError: server not ready in 120.0 s",
    }
    result["agreement"] = {}
    result["phases"] = {
        "export": {"status": "done", "seconds": 44.6},
        "engines": {"status": "incomplete", "failed_steps": ["engine fp16 EXHAUSTIVE: timed out"]},
        "services": {"status": "interrupted (SIGINT)"},
        "agreement": {"status": "not run"},
    }
    result["missing"] = ["engines", "services", "agreement"]
    result["partial"] = True
    paths = gpu_report.write(result, tmp_path)
    text = paths[1].read_text()
    assert "took 10.0 min (export 45 s)." in text
    assert "**Partial report: this run did not finish every phase.**" in text
    assert "- engines: incomplete: engine fp16 EXHAUSTIVE: timed out" in text
    assert "- services: interrupted (SIGINT)" in text
    assert "- agreement: not run" in text
    assert "| fp16 | EXHAUSTIVE | - | - | - | timed out after 90 s | - |" in text
    assert "| service fp32 | - | - | RuntimeError: server not ready in 120.0 s |" in text
    assert json.loads(paths[0].read_text())["partial"] is True
    assert paths[2].name == "gpu-synthetic.png"  # the fp32 engine was measured


def test_no_plot_before_an_engine_is_measured(tmp_path: Path) -> None:
    (tmp_path / "gpu-synthetic.png").write_bytes(b"from an earlier run")
    result = {**synthetic(), "engines": [], "modes": {}, "variants": {}, "agreement": {}}
    paths = gpu_report.write(result, tmp_path)
    assert [p.name for p in paths] == ["gpu-synthetic.json", "gpu-synthetic.md"]
    assert not (tmp_path / "gpu-synthetic.png").exists()


def test_a_run_that_cannot_export_writes_a_partial_report_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No GPU here: only its presence is faked; the export fails for real (no such model).
    monkeypatch.setattr(gpu, "require_gpu", lambda: "Fake GPU, 80 GiB, 580.00")
    args = parse("--arch", "densenet-none", "--results-dir", str(tmp_path), "--budget-s", "120")
    with pytest.raises(SystemExit) as stopped:
        gpu.run(args)
    assert stopped.value.code == 1
    result = json.loads((tmp_path / "gpu-reference.json").read_text())
    assert result["partial"] is True
    assert result["phases"]["export"]["status"] == "failed"
    assert "densenet-none" in result["phases"]["export"]["error"]
    assert {p["status"] for n, p in result["phases"].items() if n != "export"} == {"not run"}
    text = (tmp_path / "gpu-reference.md").read_text()
    assert "- export: failed: " in text
    assert "- variants: not run" in text
    assert not (tmp_path / "gpu-reference.png").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back
