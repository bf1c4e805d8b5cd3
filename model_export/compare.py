"""Agreement between two classifiers (or one file in two runtimes or precisions) on photos.

The reference model's own metadata recipe preprocesses every input, once; both models see
the same float32 tensors, so every difference comes from the models and runtimes alone.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model_export import metadata as md
from model_export.errors import ExportError
from model_export.photos import preprocess, recipe_of, varied_inputs
from model_export.runtimes import Runner, read_metadata


@dataclass
class Agreement:
    """What changes for a client when the candidate serves instead of the reference."""

    inputs: int
    top1_agreement: float  # share of inputs with the same most probable class
    top1_disagreements: int
    confident_inputs: int  # inputs whose reference top-1 probability is at least 0.5
    top1_agreement_confident: float  # top-1 agreement on those alone (1.0 if there are none)
    top5_overlap: float  # mean share of the reference's top 5 also in the candidate's
    max_probability_diff: float  # largest |softmax difference| over every class and input
    max_logit_diff: float
    mean_abs_logit_diff: float
    reference_logit_std: float  # the scale the logit differences compare with
    disagreeing_inputs: list[str] = field(default_factory=list)


# Near-ties flip under any rounding; agreement where the reference is sure is reported apart.
CONFIDENT = 0.5


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))


def top_k(logits: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-logits, axis=1, kind="stable")[:, :k]


def agreement(reference: np.ndarray, candidate: np.ndarray, names: list[str]) -> Agreement:
    """Compare two [N, classes] logit arrays computed from the same inputs."""
    if reference.shape != candidate.shape:
        raise ExportError(
            f"the models disagree on the output shape: {reference.shape} vs {candidate.shape}"
        )
    k = min(5, reference.shape[1])
    same_top1 = top_k(reference, 1)[:, 0] == top_k(candidate, 1)[:, 0]
    ref5, cand5 = top_k(reference, k), top_k(candidate, k)
    overlap = [len(set(a) & set(b)) / k for a, b in zip(ref5, cand5, strict=True)]
    logit_diff = np.abs(reference.astype(np.float64) - candidate)
    ref_probs = softmax(reference)
    confident = ref_probs.max(axis=1) >= CONFIDENT
    return Agreement(
        inputs=len(reference),
        top1_agreement=float(same_top1.mean()),
        top1_disagreements=int((~same_top1).sum()),
        confident_inputs=int(confident.sum()),
        top1_agreement_confident=float(same_top1[confident].mean()) if confident.any() else 1.0,
        top5_overlap=float(np.mean(overlap)),
        max_probability_diff=float(np.max(np.abs(ref_probs - softmax(candidate)))),
        max_logit_diff=float(logit_diff.max()),
        mean_abs_logit_diff=float(logit_diff.mean()),
        reference_logit_std=float(reference.std()),
        disagreeing_inputs=[n for n, same in zip(names, same_top1, strict=True) if not same],
    )


def run_all(runner: Runner, batches: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """Logits for every batch, and the seconds it took."""
    started = time.perf_counter()
    logits = np.concatenate([runner.run(batch) for batch in batches])
    return logits, time.perf_counter() - started


def compare(
    reference: Runner,
    candidate: Runner,
    reference_path: Path,
    photos: list[Path],
    count: int,
    seed: int,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Run both on `count` varied photos; the agreement and how it was measured."""
    recipe = recipe_of(read_metadata(reference_path))
    names, tensors = [], []
    for name, image in varied_inputs(photos, count, seed):
        names.append(name)
        tensors.append(preprocess(image, recipe))
    stacked = np.stack(tensors)
    batches = [stacked[i : i + batch_size] for i in range(0, len(stacked), batch_size)]
    ref_logits, ref_seconds = run_all(reference, batches)
    cand_logits, cand_seconds = run_all(candidate, batches)
    return {
        "agreement": asdict(agreement(ref_logits, cand_logits, names)),
        "recipe": recipe.to_metadata(),
        "photos": [str(p) for p in photos],
        "seed": seed,
        "seconds": {"reference": round(ref_seconds, 2), "candidate": round(cand_seconds, 2)},
    }


def side(path: Path, runner: Runner) -> dict[str, Any]:
    """How one side of a comparison was run, for the report."""
    meta = read_metadata(path)
    return {
        "model": str(path),
        "arch": meta.get(md.ARCH, path.stem),
        "weights": meta.get(md.WEIGHTS, "unknown"),
        "file_precision": meta.get(md.PRECISION, "fp32"),
        "runtime": runner.runtime,
        "compute_precision": runner.precision,
        **runner.details,
    }


def format_report(result: dict[str, Any]) -> str:
    lines = [f"{name}: {_describe(result[name])}" for name in ("reference", "candidate")]
    lines.append(
        f"inputs: {result['agreement']['inputs']} (seed {result['seed']}, recipe of the reference)"
    )
    return "\n".join([*lines, format_agreement(result["agreement"])])


def format_agreement(a: dict[str, Any]) -> str:
    """The agreement figures of a report, one a line."""
    sure = describe_confident(a)
    lines = [
        f"top-1 agreement: {a['top1_agreement']:.2%} "
        f"({a['inputs'] - a['top1_disagreements']}/{a['inputs']})",
        f"top-1 agreement where the reference is >= {CONFIDENT:.0%} sure: {sure}",
        f"top-5 overlap: {a['top5_overlap']:.2%}",
        f"largest probability difference: {a['max_probability_diff']:.3g}",
        f"largest logit difference: {a['max_logit_diff']:.3g} "
        f"(mean {a['mean_abs_logit_diff']:.3g}; reference logit std "
        f"{a['reference_logit_std']:.3g})",
    ]
    if a["disagreeing_inputs"]:
        lines.append(f"top-1 differs on: {', '.join(a['disagreeing_inputs'][:20])}")
    return "\n".join(lines)


def describe_confident(a: dict[str, Any]) -> str:
    if not a["confident_inputs"]:
        return "no such input"
    return f"{a['top1_agreement_confident']:.2%} of {a['confident_inputs']}"


def _describe(info: dict[str, Any]) -> str:
    return (
        f"{info['model']} ({info['arch']}, {info['weights']} weights, stored "
        f"{info['file_precision']}) in {info['runtime']} computing {info['compute_precision']}"
    )
