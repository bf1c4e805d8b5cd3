"""Prometheus metrics, defined once per app in its own registry."""

from __future__ import annotations

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
    """Every metric the service exposes; names are the operators' contract (dashboards)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
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
        self.queue_wait_seconds = Histogram(
            "classifier_queue_wait_seconds",
            "Time an image waited for its batch to start.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "classifier_inference_seconds",
            "ONNX Runtime time per batch.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.preprocess_seconds = Histogram(
            "classifier_preprocess_seconds",
            "Decode, resize and normalize time per image.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "classifier_batch_size",
            "Images per inference batch.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "classifier_queue_depth", "Images waiting for inference.", registry=r
        )
        self.images = Counter(
            "classifier_images_classified", "Images classified successfully.", registry=r
        )
        self.errors = Counter(
            "classifier_errors", "Error responses by error code.", ["code"], registry=r
        )
        self.ready = Gauge(
            "classifier_ready", "1 when the model is loaded, warm and not draining.", registry=r
        )
        self.model_info = Gauge(
            "classifier_model_info",
            "The model being served (value is always 1).",
            ["model", "arch", "weights", "providers"],
            registry=r,
        )
