"""Requests of the Open Inference Protocol -> pipeline calls -> responses; model descriptions.

Transport-free: the REST routes (and a gRPC front, if one is added) decode a request into
`oip.InferenceRequest`, call `infer`, and encode what it returns. Two inputs are
accepted: the model's own tensor (FP32 [N,3,H,W], sent to the model as it is) and `image`
(BYTES [N] or [N,1], each element an encoded image, preprocessed as /classify does). Each
row goes through the model's own dynamic batcher, so v2 and /classify requests share
batches. Outputs are the model's rows, or with the classification extension
(Triton's "Classification Extension") the top K as "value:index:label".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.dataplane.oip import (
    BYTES,
    InferenceRequest,
    InferenceResponse,
    InputTensor,
    OutputTensor,
    RequestedOutput,
)
from app.description import ModelDescription
from app.errors import InvalidParameter, ServiceError
from app.pipeline import Pipeline
from app.postprocess import top_k
from app.predictions import Inferred

SERVER_NAME = "densenet-serve"
IMAGE_INPUT = "image"
PLATFORM = "onnxruntime_onnx"
LABEL_FILE = "labels.txt"
# What `GET /v2` announces; "model_repository" joins them when model control is explicit
# (POST /v2/repository/index is served in every mode).
EXTENSIONS = ("binary_tensor_data", "classification", "model_configuration", "statistics")


def model_metadata(
    about: ModelDescription, versions: Sequence[int], with_image: bool
) -> dict[str, Any]:
    """The protocol's model metadata: the model's tensor (and, `with_image`, encoded
    images) in, its scores out."""
    crop = about.crop_size
    inputs = [{"name": about.input_name, "datatype": "FP32", "shape": [-1, 3, crop, crop]}]
    if with_image:
        inputs.append({"name": IMAGE_INPUT, "datatype": BYTES, "shape": [-1, 1]})
    return {
        "name": about.name,
        "versions": [str(v) for v in versions],
        "platform": PLATFORM,
        "inputs": inputs,
        "outputs": [
            {"name": about.output_name, "datatype": "FP32", "shape": [-1, about.num_classes]}
        ],
    }


def model_config(about: ModelDescription, with_image: bool) -> dict[str, Any]:
    """The model as Triton's model configuration (JSON form) describes it; clients such as
    Triton's image_client.py and perf_analyzer read max_batch_size, the inputs and dims
    from it. With the `image` input listed, both are `optional`: a request sends one."""
    crop = about.crop_size
    tensor: dict[str, Any] = {
        "name": about.input_name,
        "data_type": "TYPE_FP32",
        "format": "FORMAT_NCHW",
        "dims": [3, crop, crop],
    }
    inputs = [tensor]
    if with_image:
        tensor["optional"] = True
        inputs.append(
            {"name": IMAGE_INPUT, "data_type": "TYPE_STRING", "dims": [1], "optional": True}
        )
    return {
        "name": about.name,
        "platform": PLATFORM,
        "backend": about.runtime,  # onnxruntime, or openvino for bf16
        "version_policy": {"all": {}},
        "max_batch_size": about.max_batch_size,
        "input": inputs,
        "output": [
            {
                "name": about.output_name,
                "data_type": "TYPE_FP32",
                "dims": [about.num_classes],
                "label_filename": LABEL_FILE,
            }
        ],
        "dynamic_batching": {
            "max_queue_delay_microseconds": round(about.max_batch_delay_ms * 1000)
        },
        "instance_group": [{"count": 1, "kind": "KIND_GPU" if about.on_gpu else "KIND_CPU"}],
    }


def repository_index(
    pipelines: Sequence[Pipeline],
    ready_only: bool,
    draining: bool,
    not_serving: Mapping[tuple[str, int], tuple[str, str]] | None = None,
) -> list[dict[str, str]]:
    """Every model version the repository knows and its state, as Triton's repository index
    lists them: those served, and (with model control) those loading, failed or unloaded.
    While the service drains, nothing is READY: no new request would be taken."""
    states = {(p.name, p.version): p.state() for p in pipelines}
    for key, known in (not_serving or {}).items():
        states.setdefault(key, known)
    index = []
    for (name, version), (state, reason) in sorted(states.items()):
        if draining:
            state, reason = "UNAVAILABLE", "the service is shutting down"
        if not ready_only or state == "READY":
            index.append({"name": name, "version": str(version), "state": state, "reason": reason})
    return index


def model_statistics(pipelines: Sequence[Pipeline]) -> dict[str, Any]:
    """Triton's statistics extension: each model version's figures since start-up."""
    entries = []
    for pipeline in pipelines:
        stats = pipeline.statistics
        entries.append(
            {
                "name": pipeline.name,
                "version": str(pipeline.version),
                "last_inference": stats.last_inference_ms,
                "inference_count": stats.success.count,
                "execution_count": stats.execution_count,
                "inference_stats": {
                    "success": stats.success.as_dict(),
                    "fail": stats.fail.as_dict(),
                    "queue": stats.queue.as_dict(),
                    "compute_input": stats.compute_input.as_dict(),
                    "compute_infer": stats.compute_infer.as_dict(),
                    "compute_output": stats.compute_output.as_dict(),
                    "cache_hit": {"count": 0, "ns": 0},
                    "cache_miss": {"count": 0, "ns": 0},
                },
                "batch_stats": [
                    {
                        "batch_size": size,
                        "compute_input": durations.compute_input.as_dict(),
                        "compute_infer": durations.compute_infer.as_dict(),
                        "compute_output": durations.compute_output.as_dict(),
                    }
                    for size, durations in sorted(stats.batches.items())
                ],
                "memory_usage": [],
            }
        )
    return {"model_stats": entries}


def _expected(pipeline: Pipeline) -> str:
    about = pipeline.describe()
    crop = about.crop_size
    return (
        f"'{about.input_name}' (FP32 [N,3,{crop},{crop}]) or "
        f"'{IMAGE_INPUT}' (BYTES [N], encoded images)"
    )


def _batch_size(pipeline: Pipeline, tensor: InputTensor) -> int:
    n = tensor.shape[0] if tensor.shape else 0
    if not 1 <= n <= pipeline.max_batch_size:
        raise InvalidParameter(
            f"input '{tensor.name}': batch size {n} is outside 1..{pipeline.max_batch_size} "
            "(max_batch_size in the model configuration)"
        )
    return n


def _images(pipeline: Pipeline, tensor: InputTensor) -> list[bytes]:
    if tensor.datatype != BYTES or tensor.elements is None:
        raise InvalidParameter(f"input '{IMAGE_INPUT}' must be BYTES, not {tensor.datatype}")
    if len(tensor.shape) not in (1, 2) or tensor.shape[1:] not in ((), (1,)):
        raise InvalidParameter(
            f"input '{IMAGE_INPUT}' must have shape [N] or [N,1], not {list(tensor.shape)}"
        )
    _batch_size(pipeline, tensor)
    return tensor.elements


def _tensor(pipeline: Pipeline, tensor: InputTensor) -> NDArray[np.float32]:
    crop = pipeline.describe().crop_size
    if tensor.datatype != "FP32" or tensor.array is None:
        raise InvalidParameter(f"input '{tensor.name}' must be FP32, not {tensor.datatype}")
    if len(tensor.shape) != 4 or tensor.shape[1:] != (3, crop, crop):
        raise InvalidParameter(
            f"input '{tensor.name}' must have shape [N,3,{crop},{crop}], not {list(tensor.shape)}"
        )
    n = _batch_size(pipeline, tensor)
    batch = tensor.array.reshape(n, 3, crop, crop)
    if not np.isfinite(batch).all():
        raise InvalidParameter(f"input '{tensor.name}' contains NaN or infinite values")
    return batch.astype(np.float32, copy=False)


def _outputs(pipeline: Pipeline, request: InferenceRequest) -> list[RequestedOutput]:
    spec, binary = pipeline.describe(), request.binary_data_output
    if request.outputs is None:
        return [RequestedOutput(spec.output_name, binary)]
    names = [o.name for o in request.outputs]
    if len(set(names)) != len(names):
        raise InvalidParameter(f"an output is requested twice: {names}")
    for output in request.outputs:
        if output.name != spec.output_name:
            raise InvalidParameter(
                f"unknown output '{output.name}'; this model's output is '{spec.output_name}'"
            )
        if output.classification is not None:
            pipeline.top_k(output.classification, f"output '{output.name}': classification")
    return [
        RequestedOutput(o.name, binary if o.binary is None else o.binary, o.classification)
        for o in request.outputs
    ]


def _check_model(pipeline: Pipeline, request: InferenceRequest) -> None:
    if request.model_name not in (None, pipeline.name):
        raise InvalidParameter(
            f"the body names model '{request.model_name}' but the URL '{pipeline.name}'"
        )
    if request.model_version not in (None, "", str(pipeline.version)):
        raise InvalidParameter(
            f"the body names version '{request.model_version}' but {pipeline.version} is used"
        )


async def _rows(works: Sequence[Awaitable[Inferred]], item: str | None) -> NDArray[np.float32]:
    """Every row, in order; the first failure cancels the rest and is raised, naming the
    item that failed (the protocol has no per-item errors)."""
    tasks = [asyncio.ensure_future(work) for work in works]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:  # also when the request is abandoned (timeout, disconnect)
        for task in tasks:
            task.cancel()
    # Every finished task's exception is read, so none is reported as never retrieved.
    failures = [(i, t.exception()) for i, t in enumerate(tasks) if t in done and not t.cancelled()]
    for i, error in failures:
        if error is None:
            continue
        if isinstance(error, ServiceError) and item is not None:
            raise type(error)(f"{item} {i} of {len(tasks)}: {error.message}") from error
        raise error
    return np.stack([task.result().output for task in tasks])


def top_k_strings(rows: NDArray[np.float32], k: int, labels: Sequence[str]) -> list[bytes]:
    """Top k of each row by value, ties to the lower index, as "value:index:label"."""
    return [
        f"{np.float32(value)!s}:{index}:{labels[index]}".encode()
        for row in rows
        for index, value in top_k(row.astype(np.float64), k)
    ]


def _render(pipeline: Pipeline, rows: NDArray[np.float32], wanted: RequestedOutput) -> OutputTensor:
    n, classes = rows.shape
    if wanted.classification is None:
        return OutputTensor(wanted.name, "FP32", (n, classes), bool(wanted.binary), array=rows)
    k = wanted.classification
    strings = top_k_strings(rows, k, pipeline.describe().labels)
    return OutputTensor(wanted.name, BYTES, (n, k), bool(wanted.binary), elements=strings)


async def infer(
    pipeline: Pipeline, request: InferenceRequest, request_id: str | None = None
) -> InferenceResponse:
    """Check the request against the model (before any work), run every row, render."""
    _check_model(pipeline, request)
    if len(request.inputs) != 1:
        names = ", ".join(f"'{t.name}'" for t in request.inputs) or "none"
        raise InvalidParameter(f"send exactly one input, {_expected(pipeline)}; got {names}")
    (given,) = request.inputs
    wanted = _outputs(pipeline, request)
    input_name = pipeline.describe().input_name
    if given.name == IMAGE_INPUT and given.name != input_name:
        images = _images(pipeline, given)
        works = [pipeline.infer_image(data, request_id) for data in images]
        rows = await _rows(works, f"input '{IMAGE_INPUT}' element")
    elif given.name == input_name:
        batch = _tensor(pipeline, given)
        rows = await _rows([pipeline.infer_tensor(row, request_id) for row in batch], None)
    else:
        raise InvalidParameter(f"unknown input '{given.name}'; send {_expected(pipeline)}")
    outputs = [_render(pipeline, rows, output) for output in wanted]
    return InferenceResponse(pipeline.name, str(pipeline.version), outputs, request.id)
