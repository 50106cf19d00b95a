"""Prometheus metrics for one app, with the standard `prometheus_client` library.

Each app has its own CollectorRegistry (not the process-wide default), so several apps in one
process (tests, notebooks) keep separate counts and never clash over metric names.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Paths reported as themselves; anything else is "other", so a scanner probing random URLs
# cannot blow up the number of time series.
ROUTES = ("/v1/embeddings", "/v1/models", "/v1/search", "/embed", "/info", "/health", "/metrics", "/docs", "/redoc",
          "/openapi.json")
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_POWERS = tuple(2.0 ** k for k in range(17))  # 1 .. 65536


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, queue_depth: Callable[[], float]):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("decoder2vec_requests", "HTTP requests answered, by route and status code "
                                "(499: the client closed the connection first)", ["path", "status"], registry=r)
        self.latency = Histogram("decoder2vec_request_duration_seconds", "Time from request to answer, by route",
                                 ["path"], buckets=_SECONDS, registry=r)
        self.queue = Gauge("decoder2vec_queue_depth", "Requests waiting for the model (503 beyond --max-queue)",
                           registry=r)
        self.queue.set_function(queue_depth)
        self.batch_texts = Histogram("decoder2vec_batch_texts", "Texts per model call", buckets=_POWERS, registry=r)
        self.batch_tokens = Histogram("decoder2vec_batch_tokens", "Tokens per model call (at most --max-batch-tokens)",
                                      buckets=_POWERS, registry=r)
        self.model_seconds = Histogram("decoder2vec_model_call_duration_seconds", "Time of one model call",
                                       buckets=_SECONDS, registry=r)
        self.inputs = Counter("decoder2vec_inputs", "Texts embedded and answered", registry=r)
        self.tokens = Counter("decoder2vec_tokens", "Tokens of the texts embedded and answered "
                              "(usage.prompt_tokens summed)", registry=r)

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        route = path if path in ROUTES else "other"
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_batch(self, texts: int, tokens: int, seconds: float) -> None:
        self.batch_texts.observe(texts)
        self.batch_tokens.observe(tokens)
        self.model_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
