"""What one harness run measures: the modes, their settings and the load steps."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Step:
    """One load step against a running server."""

    images: str  # "web" or "phone" (bench/photos.py SIZES)
    concurrency: int = 0  # closed loop; 0 for the open-loop overload step
    overload: bool = False  # open loop at overload_factor x the measured capacity

    @property
    def label(self) -> str:
        return f"{self.images} overload" if self.overload else f"{self.images} c={self.concurrency}"


@dataclass(frozen=True)
class Mode:
    """A server to start (service or PyTorch baseline) and the steps to run against it."""

    name: str
    server: str  # "service" | "baseline"
    env: dict[str, str]
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Plan:
    arch: str
    photos_per_size: int | None  # None: every bundled photo
    engine_batch_sizes: tuple[int, ...]
    engine_seconds: float
    concurrencies: tuple[int, ...]
    phone_concurrencies: tuple[int, ...]
    warmup_s: float
    duration_s: float
    overload_factor: float
    overload_s: float  # 0: no overload step
    recovery_s: float
    ready_timeout_s: float
    quiet_wait_s: float  # per step, most time to wait for other processes to go idle
    # Total seconds the run may add by waiting for quiet and measuring noisy steps again.
    patience_s: float
    service_env: dict[str, str] = field(default_factory=dict)
    only: tuple[str, ...] = ()  # MODE_KEYS to run; empty: all
    # DENSENET_PRECISION values to compare side by side: one engine ceiling and one service
    # mode (web photos) each, instead of the modes above. Empty: the usual modes.
    precisions: tuple[str, ...] = ()
    # Serve a model repository (DENSENET_MODEL_REPOSITORY) and load `model` in it (the
    # default model, so plain requests reach it) instead of an exported seeded checkpoint.
    repository: str | None = None
    model: str | None = None

    def engine_precisions(self) -> tuple[str, ...]:
        """The precisions the engine ceiling is measured in (the service's, by default)."""
        return self.precisions or (self.service_env.get("DENSENET_PRECISION", "fp32"),)

    def modes(self, draft_default: bool) -> list[Mode]:
        """The service (defaults), its batch-size-1 variant, the other JPEG decode setting on
        large photos, and the PyTorch baseline, all on the same model file; `only` picks.
        With `precisions`: one service mode per precision instead."""
        web = tuple(Step("web", c) for c in self.concurrencies)
        if self.precisions:
            return [
                Mode(f"service {p}", "service", {**self.service_env, "DENSENET_PRECISION": p}, web)
                for p in self.precisions
            ]
        phone = tuple(Step("phone", c) for c in self.phone_concurrencies)
        overload = (Step("web", overload=True),) if self.overload_s > 0 else ()
        other_draft = "false" if draft_default else "true"
        env = self.service_env
        modes = {
            "service": Mode("service", "service", dict(env), (*web, *phone, *overload)),
            "batch1": Mode(
                "service batch=1", "service", {**env, "DENSENET_MAX_BATCH_SIZE": "1"}, web
            ),
            "draft": Mode(
                f"service jpeg_draft={other_draft}",
                "service",
                {**env, "DENSENET_JPEG_DRAFT": other_draft},
                phone,
            ),
            "baseline": Mode("pytorch baseline", "baseline", {}, web),
        }
        if self.repository is not None:
            del modes["baseline"]  # needs the PyTorch checkpoint, which a repository lacks
        return [mode for key, mode in modes.items() if not self.only or key in self.only]


MODE_KEYS = ("service", "batch1", "draft", "baseline")

REFERENCE = Plan(
    arch="densenet121",
    photos_per_size=None,
    engine_batch_sizes=(1, 2, 4, 8, 16),
    engine_seconds=4.0,
    concurrencies=(1, 4, 16, 64),
    phone_concurrencies=(1, 16),
    warmup_s=3.0,
    duration_s=12.0,
    overload_factor=2.0,
    overload_s=30.0,
    recovery_s=10.0,
    ready_timeout_s=180.0,
    quiet_wait_s=20.0,
    patience_s=240.0,
)

SMOKE = Plan(
    arch="densenet-tiny",
    photos_per_size=2,
    engine_batch_sizes=(1, 4),
    engine_seconds=0.2,
    concurrencies=(1, 4),
    phone_concurrencies=(2,),
    warmup_s=0.3,
    duration_s=1.0,
    overload_factor=2.0,
    overload_s=0.5,
    recovery_s=0.3,
    ready_timeout_s=60.0,
    quiet_wait_s=0.0,
    patience_s=0.0,
)
