"""Per model version figures in the shape of Triton's statistics extension, since start-up.

Counted per inference (one image, or one row of a tensor batch), as the pipelines see
them: `success` is the time from admission to the model's row, `queue` the wait for a
batch, `compute_input` the decoding and preprocessing of an image, `compute_infer` the
run of the batch it was part of. Post-processing (softmax, top-k: microseconds) is not
timed: `compute_output` counts inferences with no time. Batches are counted per size
(at most DENSENET_MAX_BATCH_SIZE of them), so nothing here grows with traffic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.ns += round(seconds * 1e9)

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class BatchDurations:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass
class ModelStatistics:
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    execution_count: int = 0
    last_inference_ms: int = 0  # milliseconds since the epoch
    batches: dict[int, BatchDurations] = field(default_factory=dict)

    def record_batch(self, size: int, stack_s: float, infer_s: float, split_s: float) -> None:
        """One run of the model on a batch of `size` inputs."""
        self.execution_count += 1
        durations = self.batches.setdefault(size, BatchDurations())
        durations.compute_input.add(stack_s)
        durations.compute_infer.add(infer_s)
        durations.compute_output.add(split_s)

    def record_success(
        self, total_s: float, queue_s: float, input_s: float, infer_s: float
    ) -> None:
        self.success.add(total_s)
        self.queue.add(queue_s)
        self.compute_input.add(input_s)
        self.compute_infer.add(infer_s)
        self.compute_output.add(0.0)
        self.last_inference_ms = int(time.time() * 1000)

    def record_failure(self, total_s: float) -> None:
        self.fail.add(total_s)
