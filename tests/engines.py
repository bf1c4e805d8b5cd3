"""A real Engine with a hand on its throttle: hold, slow or fail inference on purpose.

Only for faults a test cannot cause through the API (a stuck or failing model).
"""

from __future__ import annotations

import threading

import numpy as np
from numpy.typing import NDArray

from app.engine import Engine


class ControlledEngine:
    """Wraps a real engine (no second load); warm-up goes through `run` too."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.spec, self.runtime, self.precision = inner.spec, inner.runtime, inner.precision
        self.providers, self.warm_every_batch_size = inner.providers, inner.warm_every_batch_size
        self.gate = threading.Event()
        self.gate.set()
        self.fail_next = 0
        self.batch_sizes: list[int] = []
        self.started = threading.Event()  # set when a run begins

    def release_memory(self) -> None:
        self.inner.release_memory()

    def run(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        self.started.set()
        if not self.gate.wait(timeout=30):
            raise TimeoutError("test gate never opened")
        if self.fail_next > 0:
            self.fail_next -= 1
            raise RuntimeError("injected inference failure")
        self.batch_sizes.append(len(batch))
        return self.inner.run(batch)
