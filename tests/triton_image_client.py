"""An image classification client written the way Triton's own example
`src/python/examples/image_client.py` (triton-inference-server/client) is: it reads the
model's metadata and configuration, checks them (one input, one FP32 output, a batch
dimension, NCHW or NHWC), preprocesses on the client, sends FP32 with `class_count`, and
prints "value (index) = label" per class. Nothing in it knows this service.

    python -m tests.triton_image_client -m MODEL -c 5 -s INCEPTION -u HOST:PORT IMAGE
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
import tritonclient.http as httpclient
from numpy.typing import NDArray
from PIL import Image
from tritonclient.utils import InferenceServerException, triton_to_np_dtype


def parse_model(metadata: dict[str, Any], config: dict[str, Any]) -> tuple[Any, ...]:
    """Check that the model is an image classifier this client can feed."""
    if len(metadata["inputs"]) != 1:
        raise ValueError(f"expecting 1 input, got {len(metadata['inputs'])}")
    if len(metadata["outputs"]) != 1:
        raise ValueError(f"expecting 1 output, got {len(metadata['outputs'])}")
    if len(config["input"]) != 1:
        raise ValueError(f"expecting 1 input in the model configuration, got {config['input']}")
    input_metadata, input_config = metadata["inputs"][0], config["input"][0]
    output_metadata = metadata["outputs"][0]
    if output_metadata["datatype"] != "FP32":
        raise ValueError(f"expecting output datatype FP32, got {output_metadata['datatype']}")
    batching = config["max_batch_size"] > 0
    non_one = [d for d in output_metadata["shape"][1 if batching else 0 :] if d > 1]
    if len(non_one) > 1:
        raise ValueError("expecting the model output to be a vector")
    if len(input_metadata["shape"]) != 3 + batching:
        raise ValueError(f"expecting {3 + batching} input dims, got {input_metadata['shape']}")
    if input_config["format"] not in ("FORMAT_NCHW", "FORMAT_NHWC"):
        raise ValueError(f"unexpected input format {input_config['format']}")
    dims = input_metadata["shape"][1 if batching else 0 :]
    if input_config["format"] == "FORMAT_NHWC":
        h, w, c = dims
    else:
        c, h, w = dims
    return (
        config["max_batch_size"],
        input_metadata["name"],
        output_metadata["name"],
        c,
        h,
        w,
        input_config["format"],
        input_metadata["datatype"],
    )


def preprocess(
    image: Image.Image, fmt: str, dtype: str, c: int, h: int, w: int, scaling: str
) -> NDArray[Any]:
    """Resize to the model's input, scale, and order the channels as the model wants."""
    sample = image.convert("L" if c == 1 else "RGB")
    resized = np.array(sample.resize((w, h), Image.Resampling.BILINEAR))
    if resized.ndim == 2:
        resized = resized[:, :, np.newaxis]
    typed = resized.astype(triton_to_np_dtype(dtype))
    if scaling == "INCEPTION":
        scaled = (typed / 127.5) - 1
    elif scaling == "VGG":
        scaled = typed - np.asarray((123, 117, 104) if c == 3 else (128,), dtype=typed.dtype)
    else:
        scaled = typed
    ordered: NDArray[Any] = np.transpose(scaled, (2, 0, 1)) if fmt == "FORMAT_NCHW" else scaled
    return ordered.astype(typed.dtype)


def postprocess(result: httpclient.InferResult, output_name: str, batch_size: int) -> list[str]:
    output = result.as_numpy(output_name)
    if output is None or len(output) != batch_size:
        raise ValueError(f"expected {batch_size} results")
    lines = []
    for row in output:
        for element in row:
            value, index, label = element.decode().split(":", 2)
            lines.append(f"    {value} ({index}) = {label}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-m", "--model-name", required=True)
    parser.add_argument("-x", "--model-version", default="")
    parser.add_argument("-c", "--classes", type=int, default=1)
    parser.add_argument("-s", "--scaling", choices=["NONE", "INCEPTION", "VGG"], default="NONE")
    parser.add_argument("-u", "--url", default="localhost:8000")
    parser.add_argument("image_filename")
    flags = parser.parse_args(argv)
    client = httpclient.InferenceServerClient(url=flags.url)
    try:
        metadata = client.get_model_metadata(flags.model_name, flags.model_version)
        config = client.get_model_config(flags.model_name, flags.model_version)
    except InferenceServerException as exc:
        print(f"failed to retrieve the metadata or config: {exc}")
        return 1
    max_batch_size, input_name, output_name, c, h, w, fmt, dtype = parse_model(metadata, config)
    if max_batch_size < 1:
        print("this client sends batches; the model does not take them")
        return 1
    image = preprocess(Image.open(flags.image_filename), fmt, dtype, c, h, w, flags.scaling)
    batch = np.stack([image], axis=0)
    inputs = [httpclient.InferInput(input_name, list(batch.shape), dtype)]
    inputs[0].set_data_from_numpy(batch)
    outputs = [httpclient.InferRequestedOutput(output_name, class_count=flags.classes)]
    try:
        result = client.infer(
            flags.model_name, inputs, flags.model_version, outputs, request_id="1"
        )
    except InferenceServerException as exc:
        print(f"inference failed: {exc}")
        return 1
    print(f"Request 1, batch size 1\nImage '{flags.image_filename}':")
    print("\n".join(postprocess(result, output_name, 1)))
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
