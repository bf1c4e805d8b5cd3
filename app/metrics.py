"""Prometheus metrics, defined once per app in its own registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.35,
    0.5,
    0.75,
    1.0,
    1.5,
    2.5,
    5.0,
    7.5,
    10.0,
    15.0,
    30.0,
)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)


class Metrics:
    """Every metric the service exposes; names are the operators' contract (dashboards).

    Labels come from closed sets only: routes are route templates (or `unmatched`),
    methods are the HTTP methods the API uses (or `other`) or the gRPC front's methods,
    gRPC codes are gRPC's status code names, models and versions are the
    ones loaded at start-up, error codes are the service's own.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        per_model = ["model", "version"]
        self.requests = Counter(
            "classifier_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "classifier_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.grpc_requests = Counter(
            "classifier_grpc_requests",
            "gRPC calls by method and status code.",
            ["method", "code"],
            registry=r,
        )
        self.grpc_request_seconds = Histogram(
            "classifier_grpc_request_duration_seconds",
            "gRPC call latency by method.",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait_seconds = Histogram(
            "classifier_queue_wait_seconds",
            "Time an image waited for its batch to start.",
            per_model,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "classifier_inference_seconds",
            "ONNX Runtime time per batch.",
            per_model,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.preprocess_seconds = Histogram(
            "classifier_preprocess_seconds",
            "Decode, resize and normalize time per image.",
            per_model,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "classifier_batch_size",
            "Images per inference batch.",
            per_model,
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "classifier_queue_depth", "Images waiting for inference.", per_model, registry=r
        )
        self.admitted_images = Gauge(
            "classifier_admitted_images",
            "Images admitted and not yet handed to inference: being decoded or waiting "
            "(what DENSENET_MAX_QUEUE_SIZE limits; 503 overloaded at the limit).",
            per_model,
            registry=r,
        )
        self.queue_limit = Gauge(
            "classifier_queue_limit",
            "The configured limit on admitted images (DENSENET_MAX_QUEUE_SIZE).",
            per_model,
            registry=r,
        )
        self.requests_in_progress = Gauge(
            "classifier_requests_in_progress",
            "Classification requests accepted and not yet answered (a drain waits for them).",
            registry=r,
        )
        self.upload_bytes = Gauge(
            "classifier_upload_bytes",
            "Request body bytes received and held by uploads in progress "
            "(DENSENET_MAX_INFLIGHT_UPLOAD_BYTES limits them).",
            registry=r,
        )
        self.images = Counter(
            "classifier_images_classified",
            "Images classified successfully.",
            per_model,
            registry=r,
        )
        self.errors = Counter(
            "classifier_errors", "Error responses by error code.", ["code"], registry=r
        )
        self.ready = Gauge(
            "classifier_ready",
            "1 when every model is loaded and warm and the service is not draining.",
            registry=r,
        )
        self.model_ready = Gauge(
            "classifier_model_ready", "1 when this model version is warm.", per_model, registry=r
        )
        self.model_info = Gauge(
            "classifier_model_info",
            "The models being served (value is always 1).",
            [*per_model, "arch", "weights", "precision", "providers"],
            registry=r,
        )

        self.model_loads = Counter(
            "classifier_model_loads",
            "Model version loads and unloads (model control) by outcome: loaded, failed, unloaded.",
            ["model", "outcome"],
            registry=r,
        )
        self.model_load_seconds = Histogram(
            "classifier_model_load_seconds",
            "Time from a load's start to the new version serving (loading and warm-up).",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def forget_model(self, name: str, version: int, info: tuple[str, ...]) -> None:
        """Stop exporting an unloaded model version's series (its info labels: `info`)."""
        labels = (name, str(version))
        for family in (
            self.queue_wait_seconds,
            self.inference_seconds,
            self.preprocess_seconds,
            self.batch_size,
            self.queue_depth,
            self.admitted_images,
            self.queue_limit,
            self.images,
            self.model_ready,
        ):
            family.remove(*labels)
        self.model_info.remove(*labels, *info)

    def for_model(self, name: str, version: int) -> ModelMetrics:
        """The per-model series of one served model version."""
        labels = (name, str(version))
        return ModelMetrics(
            queue_wait_seconds=self.queue_wait_seconds.labels(*labels),
            inference_seconds=self.inference_seconds.labels(*labels),
            preprocess_seconds=self.preprocess_seconds.labels(*labels),
            batch_size=self.batch_size.labels(*labels),
            queue_depth=self.queue_depth.labels(*labels),
            admitted_images=self.admitted_images.labels(*labels),
            queue_limit=self.queue_limit.labels(*labels),
            images=self.images.labels(*labels),
            ready=self.model_ready.labels(*labels),
        )


@dataclass(frozen=True)
class ModelMetrics:
    """One model version's labelled series, handed to its pipeline and batcher."""

    queue_wait_seconds: Histogram
    inference_seconds: Histogram
    preprocess_seconds: Histogram
    batch_size: Histogram
    queue_depth: Gauge
    admitted_images: Gauge
    queue_limit: Gauge
    images: Counter
    ready: Gauge
