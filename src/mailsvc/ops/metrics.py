"""Prometheus metrics; the only importer of prometheus-client."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

HTTP_REQUESTS = Counter(
    "mailsvc_http_requests_total", "HTTP requests served.", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "mailsvc_http_request_duration_seconds",
    "HTTP request latency.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST


def observe_request(*, method: str, route: str, status: int, seconds: float) -> None:
    """Record one request; `route` is the path template, never the raw path."""
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_LATENCY.labels(method, route).observe(seconds)


def render_metrics() -> bytes:
    return generate_latest()
