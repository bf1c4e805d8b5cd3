"""Write the serving metadata onto an ONNX classifier that was not exported here."""

from __future__ import annotations

from pathlib import Path

import onnx

from model_export import metadata as md
from model_export.errors import ExportError
from model_export.export import set_metadata
from model_export.precision import graph_precision


def _static_dims(value_info: onnx.ValueInfoProto) -> list[int | None]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else None for d in dims]


def annotate(
    model_path: Path,
    output: Path,
    labels: list[str] | None,
    recipe_overrides: dict[str, str],
) -> dict[str, str]:
    """Validate the model's shape against the labels/recipe, then write the keys.

    Recipe keys neither given nor already present get ImageNet defaults, so the file
    always ends up with a complete recipe. Returns the keys written.
    """
    try:
        proto = onnx.load(str(model_path))
    except Exception as exc:
        raise ExportError(f"{model_path} is not a readable ONNX model: {exc}") from exc
    graph = proto.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(graph.output) < 1:
        raise ExportError("expected a classifier with one image input and a logits output")
    in_dims, out_dims = _static_dims(inputs[0]), _static_dims(graph.output[0])
    if len(in_dims) != 4 or in_dims[1] not in (3, None) or len(out_dims) != 2:
        raise ExportError(
            f"expected input [N,3,H,W] and output [N,classes]; got {in_dims} -> {out_dims}"
        )

    present = {entry.key: entry.value for entry in proto.metadata_props}
    props = {k: v for k, v in md.IMAGENET_RECIPE.to_metadata().items() if k not in present}
    if md.PRECISION not in present:
        props[md.PRECISION] = graph_precision(proto)
    props.update(recipe_overrides)
    if labels is not None:
        classes = out_dims[1]
        if classes is not None and len(labels) != classes:
            raise ExportError(
                f"labels file has {len(labels)} names but the model outputs {classes}"
            )
        props.update(md.labels_to_metadata(labels))
    crop = int(props.get(md.CROP_SIZE, present.get(md.CROP_SIZE, "0")))
    if in_dims[2] not in (crop, None) or in_dims[3] not in (crop, None):
        raise ExportError(f"crop size {crop} does not match the model's input {in_dims[2:]}")
    set_metadata(proto, props)
    onnx.save(proto, str(output))
    return props
