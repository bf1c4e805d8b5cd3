"""Response models; the OpenAPI document is generated from these."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Prediction(BaseModel):
    label: str = Field(examples=["golden retriever"])
    class_index: int = Field(examples=[207])
    probability: float = Field(ge=0, le=1, examples=[0.8731])


class Timings(BaseModel):
    queue_ms: float = Field(description="Waiting for a batch to start.")
    preprocess_ms: float = Field(description="Decoding, resizing and normalizing the image.")
    inference_ms: float = Field(description="Running the batch this image was part of.")
    total_ms: float = Field(description="From the request's arrival to the response.")


class Classification(BaseModel):
    model: str = Field(examples=["densenet121"])
    version: int = Field(examples=[1])
    predictions: list[Prediction]
    timings: Timings
    warnings: list[str] = Field(
        default_factory=list,
        description="Things the caller should know, e.g. that the model has random weights.",
    )


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid_image"], description="Stable, for programs to branch on.")
    message: str = Field(examples=["not a decodable image; send JPEG, PNG, GIF, WebP, BMP or TIFF"])
    request_id: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class BatchItem(BaseModel):
    index: int = Field(description="Position of the file in the request.")
    filename: str | None = None
    result: Classification | None = None
    error: ErrorDetail | None = None


class BatchClassification(BaseModel):
    model: str
    version: int
    results: list[BatchItem]


class BatchingInfo(BaseModel):
    max_batch_size: int
    max_batch_delay_ms: float
    max_queue_size: int


class ModelInfo(BaseModel):
    name: str
    version: int
    latest: bool = Field(description="The version requests without a version get.")
    default: bool = Field(description="What requests without a model name get.")
    ready: bool = Field(description="Loaded and warmed up.")
    arch: str | None
    weights: str = Field(description="imagenet, random, checkpoint or unknown.")
    weights_source: str | None
    precision: str = Field(
        description="Numeric precision the model computes in as served: fp32, bf16, fp16 or int8."
    )
    stored_precision: str = Field(
        description="How the file stores its weights: fp32, fp16 or int8 (an int8 export)."
    )
    runtime: str = Field(description="The runtime that runs it: onnxruntime or openvino.")
    input_shape: list[int | str]
    num_classes: int
    preprocessing: dict[str, object]
    providers: list[str]
    batching: BatchingInfo
    warnings: list[str]


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class ModelList(BaseModel):
    default_model: str
    models: list[ModelInfo] = Field(description="One entry per served model version.")
