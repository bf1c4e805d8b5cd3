"""Service settings: one class, read from DENSENET_* environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def available_cpus() -> int:
    """CPUs this process may use: affinity mask, then the cgroup v2 quota of a container."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


class Settings(BaseSettings):
    """Every field is set by the environment variable DENSENET_<FIELD NAME IN CAPITALS>."""

    model_config = SettingsConfigDict(env_prefix="DENSENET_", extra="ignore", frozen=True)

    # Model and runtime
    model_path: Path = Field(
        Path("models/densenet121.onnx"),
        description="ONNX classifier to serve when no model repository is set (with one set, "
        "this is ignored: the images set it by default).",
    )
    model_repository: Path | None = Field(
        None,
        description="Directory of models to serve, laid out DIR/<name>/<version>/model.onnx "
        "(versions are positive integers; every version is served, the latest by default).",
    )
    default_model: str | None = Field(
        None,
        description="Model that requests without a model name get; required when the "
        "repository holds several models.",
    )
    providers: str = Field(
        "auto",
        description="'auto' (CUDA when onnxruntime-gpu sees a GPU, else CPU) or a comma-separated "
        "list of ONNX Runtime execution providers; an unavailable one is a start-up error.",
    )
    precision: Literal["fp32", "bf16", "fp16", "int8", "auto"] = Field(
        "fp32",
        description="Numeric precision the models compute in. fp32: ONNX Runtime, exact "
        "(PyTorch parity within 1e-4). bf16: the OpenVINO runtime on a CPU with native bf16 "
        "(AVX512-BF16 or AMX). fp16: ONNX Runtime on CUDA with an fp16 export. int8: the "
        "OpenVINO runtime on a CPU with VNNI or AMX, serving int8 exports (`python -m "
        "model_export quantize`). auto: fp16/fp32 as stored on a GPU, else bf16 where native, "
        "else fp32; never int8. One the hardware would only emulate is a start-up error.",
    )
    cudnn_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = Field(
        "EXHAUSTIVE",
        description="CUDA only: how cuDNN picks convolution algorithms, per input shape at "
        "warm-up. EXHAUSTIVE benchmarks them all (slowest start, fastest batches), HEURISTIC "
        "asks cuDNN's heuristics, DEFAULT takes the first that fits.",
    )
    intra_op_threads: int = Field(
        0, ge=0, description="ONNX Runtime intra-op threads; 0 = the CPUs available to the process."
    )
    preprocess_threads: int = Field(
        0, ge=0, description="Threads that decode and resize images; 0 = the CPUs available."
    )
    warmup_runs: int = Field(
        2,
        ge=0,
        description="Warm-up runs before ready: at batch 1 and the maximum batch on CPU, at "
        "every batch size on CUDA (cuDNN tunes per shape).",
    )
    model_control: Literal["none", "explicit", "poll"] = Field(
        "none",
        description="How the served models change while running (needs model_repository): "
        "'none' (loaded at start-up, as they are), 'explicit' (clients with the API key "
        "load and unload them: POST /v2/repository/models/NAME/load|unload), 'poll' (the "
        "repository directory is read every repository_poll_s and followed).",
    )
    repository_poll_s: float = Field(
        5.0,
        gt=0,
        description="poll mode: seconds between looks at the repository; a new or changed "
        "version is loaded once its model.onnx has stayed the same for one interval.",
    )
    model_control_open: bool = Field(
        False,
        description="explicit mode without an API key: allow anyone who reaches the port to "
        "load and unload models (refused otherwise).",
    )
    v2_metadata_inputs: Literal["both", "tensor"] = Field(
        "both",
        description="Inputs that v2 model metadata and configuration list: 'both' (the "
        "model's FP32 tensor and 'image', encoded images; each optional, as perf_analyzer "
        "needs to send images) or 'tensor' (for clients that expect exactly one input, such "
        "as Triton's image_client.py). Requests may send either in both cases.",
    )
    jpeg_draft: bool = Field(
        True,
        description="Decode large JPEGs at a reduced scale (DCT scaling) when the result still "
        "keeps the shorter side at least twice the resize size: much faster, not bit-exact.",
    )

    # Batching and load shedding
    max_batch_size: int = Field(8, ge=1, le=1024, description="Most images in one inference.")
    max_batch_delay_ms: float = Field(
        0.0,
        ge=0,
        description="Longest a batch waits for more images after its first arrived. 0: run as "
        "soon as the model is free; images that arrive meanwhile form the next batch.",
    )
    max_queue_size: int = Field(
        64,
        ge=1,
        description="Images being decoded or waiting for inference, per model (all its "
        "versions together); beyond it requests get 503.",
    )
    request_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Deadline for a classification once its body has arrived; past it 504.",
    )

    # Input limits
    max_upload_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, description="Largest request body for /classify (413 beyond)."
    )
    max_batch_upload_bytes: int = Field(
        100 * 1024 * 1024, ge=1024, description="Largest request body for /classify/batch."
    )
    max_batch_images: int = Field(32, ge=1, description="Most images in one /classify/batch call.")
    max_v2_body_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="Largest Open Inference Protocol (v2) request body, as sent and once "
        "inflated (gzip, deflate); 413 beyond.",
    )
    max_inflight_upload_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024,
        description="Request body bytes all requests together may hold at once, counted as "
        "they arrive; beyond it 503 overloaded (at once when a declared Content-Length cannot "
        "fit). Bounds the memory and the /tmp spool that uploads can take.",
    )
    max_image_pixels: int = Field(
        40_000_000, ge=1, description="Largest width x height accepted (decompression bombs: 413)."
    )
    body_read_timeout_s: float = Field(
        30.0, gt=0, description="Longest a client may take to send its request body (408 beyond)."
    )
    default_top_k: int = Field(5, ge=1, description="Predictions returned when top_k is not given.")
    max_top_k: int = Field(
        1000, ge=1, description="Largest top_k a request may ask for (capped at the class count)."
    )

    # Security
    api_key: SecretStr | None = Field(
        None, description="If set, classification needs 'Authorization: Bearer <key>'."
    )
    protect_ops_endpoints: bool = Field(
        False,
        description="With api_key set, also require it for what describes the service: "
        "/metrics; /models, /models/NAME[/versions/V], /model and /v1/model; v2 model "
        "metadata, configuration and statistics (/v2/models/NAME[/versions/V], .../config, "
        "/v2/models[/NAME[/versions/V]]/stats) and /v2/repository/index; and their gRPC "
        "calls (ModelMetadata, ModelConfig, ModelStatistics, RepositoryIndex). Health, "
        "readiness, GET /v2 and the page stay open.",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS (JSON list); none by default."
    )

    # Server and process
    ui: bool = Field(True, description="Serve the page for people at / (false: / answers 404).")
    host: str = Field("127.0.0.1", description="Interface to listen on (0.0.0.0 in containers).")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on.")
    shutdown_grace_s: float = Field(
        30.0,
        ge=0,
        description="On SIGTERM, how long accepted requests may take to finish; the process "
        "exits within this plus 2 s whatever the model does.",
    )
    grpc_port: int = Field(
        8001,
        ge=0,
        le=65535,
        description="TCP port of the gRPC front (Open Inference Protocol, Triton's "
        "GRPCInferenceService, and grpc.health.v1), on the same host; 0 turns it off.",
    )
    grpc_max_concurrent_rpcs: int = Field(
        64,
        ge=1,
        description="gRPC calls in progress at once (the default matches the default "
        "max_queue_size: single-image calls beyond it would be refused overloaded anyway); "
        "beyond it gRPC itself answers RESOURCE_EXHAUSTED.",
    )
    grpc_max_message_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="Largest gRPC request message (capped at max_v2_body_bytes); gRPC "
        "receives a whole message before the service sees it, so calls being received hold "
        "at most this times grpc_max_concurrent_rpcs. Once received, a message is held in "
        "the upload budget (max_inflight_upload_bytes) with the HTTP bodies.",
    )
    limit_concurrency: int = Field(
        1000,
        ge=1,
        description="Most open connections; beyond it new requests get 503 from the HTTP "
        "server itself.",
    )
    keep_alive_timeout_s: int = Field(
        5, ge=1, description="Seconds an idle keep-alive connection stays open."
    )
    log_format: Literal["text", "json"] = Field("text", description="Log line format.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level."
    )

    @model_validator(mode="after")
    def _default_top_k_within_max(self) -> Settings:
        if self.default_top_k > self.max_top_k:
            raise ValueError("default_top_k must not exceed max_top_k")
        return self

    @model_validator(mode="after")
    def _control_needs_a_repository(self) -> Settings:
        if self.model_control != "none" and self.model_repository is None:
            raise ValueError("DENSENET_MODEL_CONTROL needs DENSENET_MODEL_REPOSITORY")
        return self

    @model_validator(mode="after")
    def _one_model_source(self) -> Settings:
        if self.default_model is not None and self.model_repository is None:
            raise ValueError("DENSENET_DEFAULT_MODEL needs DENSENET_MODEL_REPOSITORY")
        return self

    @field_validator("api_key")
    @classmethod
    def _api_key_usable(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty key (what `${API_KEY}` gives when unset) must not turn auth on with an
        # empty token accepted: refuse to start rather than guess what was meant.
        if value is None:
            return None
        # Surrounding whitespace is dropped as it is from the client's token: a key made
        # from a file usually ends in a newline that no client sends.
        key = value.get_secret_value().strip()
        if not key:
            raise ValueError(
                "DENSENET_API_KEY is set but empty; unset it to turn authentication off"
            )
        # A bearer token travels in an HTTP header (latin-1 on the wire): a key outside
        # printable ASCII could never be matched.
        if not all(" " <= c <= "~" for c in key):
            raise ValueError(
                "DENSENET_API_KEY may hold only printable ASCII characters (no tabs or "
                "control characters, nothing outside ASCII): an HTTP header could not carry it"
            )
        return SecretStr(key)

    @field_validator("providers")
    @classmethod
    def _providers_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("providers must be 'auto' or a comma-separated list")
        return value.strip()

    def provider_list(self) -> list[str] | None:
        """Explicitly requested providers, or None for auto."""
        if self.providers.lower() == "auto":
            return None
        return [p.strip() for p in self.providers.split(",") if p.strip()]

    def resolved_intra_op_threads(self) -> int:
        return self.intra_op_threads or available_cpus()

    def resolved_preprocess_threads(self) -> int:
        return self.preprocess_threads or available_cpus()
