"""Prometheus metrics; the only importer of prometheus-client."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

HTTP_REQUESTS = Counter(
    "mailsvc_http_requests_total", "HTTP requests served.", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "mailsvc_http_request_duration_seconds",
    "HTTP request latency.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
IDLE_CONNECTIONS = Gauge(
    "mailsvc_idle_connections",
    "IMAP connections of this process that are watching a mailbox (IDLE or NOOP polling).",
)

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST


SYNC_PASSES = Counter("mailsvc_sync_passes_total", "Account sync passes by outcome.", ["outcome"])
SYNC_PASS_SECONDS = Histogram(
    "mailsvc_sync_pass_duration_seconds",
    "Duration of one account sync pass.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)
SYNC_MESSAGES = Counter(
    "mailsvc_sync_messages_total", "Messages changed by sync passes.", ["change"]
)


def observe_sync(
    *, outcome: str, seconds: float, new: int = 0, updated: int = 0, deleted: int = 0
) -> None:
    """Record one sync pass (`outcome`: ok, auth_error, connect_error, gone)."""
    SYNC_PASSES.labels(outcome).inc()
    SYNC_PASS_SECONDS.observe(seconds)
    for change, count in (("new", new), ("updated", updated), ("deleted", deleted)):
        if count:
            SYNC_MESSAGES.labels(change).inc(count)


def observe_request(*, method: str, route: str, status: int, seconds: float) -> None:
    """Record one request; `route` is the path template, never the raw path."""
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_LATENCY.labels(method, route).observe(seconds)


def count_idle_connections(delta: int) -> None:
    """Add `delta` (+1 when a watching connection opens, -1 when it closes)."""
    IDLE_CONNECTIONS.inc(delta)


def render_metrics() -> bytes:
    return generate_latest()
