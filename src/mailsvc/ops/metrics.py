"""Prometheus metrics; the only importer of prometheus-client."""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from pydantic import SecretStr

from mailsvc.errors import MailsvcError

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

GC_PAUSES = Histogram(
    "mailsvc_gc_pause_seconds",
    "Garbage collections of this process by generation (2: full), and how long each "
    "held everything up.",
    ["generation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
LOOP_LAG = Histogram(
    "mailsvc_event_loop_lag_seconds",
    "How late a timer of this process's event loop ran (sampled every 0.25 s): what a "
    "request arriving then waited before any of its code ran.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
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


def observe_gc_pause(generation: int, seconds: float) -> None:
    GC_PAUSES.labels(str(generation)).observe(seconds)


def observe_loop_lag(seconds: float) -> None:
    LOOP_LAG.observe(seconds)


def count_idle_connections(delta: int) -> None:
    """Add `delta` (+1 when a watching connection opens, -1 when it closes)."""
    IDLE_CONNECTIONS.inc(delta)


OUTBOX_ATTEMPTS = Counter(
    "mailsvc_outbox_attempts_total",
    "Outbox send attempts by what became of the entry: sent, retry (queued again), "
    "failed (given up).",
    ["outcome"],
)
OUTBOX_RETRY_DELAY = Histogram(
    "mailsvc_outbox_retry_delay_seconds",
    "Backoff chosen before an outbox entry's next attempt.",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)
OUTBOX_BOUNCES = Counter(
    "mailsvc_outbox_bounces_total", "Sent outbox entries a delivery status notification bounced."
)
WEBHOOK_ATTEMPTS = Counter(
    "mailsvc_webhook_attempts_total",
    "Webhook delivery attempts by outcome: succeeded, retry (pending again), failed "
    "(given up after the last attempt).",
    ["outcome"],
)
WEBHOOK_GIVEN_UP = Counter(
    "mailsvc_webhook_deliveries_dropped_total",
    "Webhook deliveries given up without a request (the event left the change log, "
    "or cannot be encoded).",
)
WEBHOOK_LAG = Histogram(
    "mailsvc_webhook_delivery_lag_seconds",
    "From the event's transaction to the receiver's 2xx, retries included.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400),
)
SEARCH_REQUESTS = Counter(
    "mailsvc_search_requests_total",
    "Message searches (list requests with a query) by outcome: ok, invalid (4xx), "
    "unavailable (503 while the tenant's index is rebuilt), error.",
    ["outcome"],
)
SEARCH_SECONDS = Histogram(
    "mailsvc_search_duration_seconds",
    "Time to parse a message search, ask the search index and build its page.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CHANGES_TRIMMED = Counter(
    "mailsvc_changes_trimmed_total", "Change-log rows deleted by retention (CHANGE_RETENTION_DAYS)."
)
OUTBOX_ENTRIES = Gauge(
    "mailsvc_outbox_entries",
    "Outbox entries still to send, across tenants, by status (queued includes those "
    "scheduled for later), as of this worker's last sweep. Every worker counts the "
    "same rows: aggregate with max, not sum.",
    ["status"],
)


def _export_outcomes(counter: Counter, outcomes: tuple[str, ...]) -> None:
    # Exported from the start (at 0), so a rate over an outcome that has not happened
    # yet in this process is 0 rather than absent.
    for outcome in outcomes:
        counter.labels(outcome)


_export_outcomes(OUTBOX_ATTEMPTS, ("sent", "retry", "failed"))
_export_outcomes(WEBHOOK_ATTEMPTS, ("succeeded", "retry", "failed"))
_export_outcomes(SEARCH_REQUESTS, ("ok", "invalid", "error"))


def observe_outbox_attempt(*, outcome: str, retry_delay_seconds: float | None = None) -> None:
    """Record one outbox attempt (`outcome`: sent, retry, failed) and, for a retry,
    the delay before the next one."""
    OUTBOX_ATTEMPTS.labels(outcome).inc()
    if retry_delay_seconds is not None:
        OUTBOX_RETRY_DELAY.observe(retry_delay_seconds)


def count_outbox_bounces(count: int) -> None:
    """Add `count` sent entries marked bounced."""
    OUTBOX_BOUNCES.inc(count)


def observe_webhook_attempt(*, outcome: str, lag_seconds: float | None = None) -> None:
    """Record one webhook attempt (`outcome`: succeeded, retry, failed); a success
    carries the lag from its event's transaction."""
    WEBHOOK_ATTEMPTS.labels(outcome).inc()
    if lag_seconds is not None:
        WEBHOOK_LAG.observe(max(lag_seconds, 0.0))


def count_webhook_dropped() -> None:
    """One delivery given up without a request."""
    WEBHOOK_GIVEN_UP.inc()


@contextmanager
def timed_search() -> Iterator[None]:
    """Record the search run in the block: ok, invalid (a 4xx `MailsvcError`: the
    request was refused), unavailable (a 5xx one: the index is being rebuilt), or
    error (anything else, a cancellation included)."""
    started = time.perf_counter()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    except MailsvcError as exc:
        outcome = "invalid" if exc.status < 500 else "unavailable"
        raise
    finally:
        SEARCH_REQUESTS.labels(outcome).inc()
        SEARCH_SECONDS.observe(time.perf_counter() - started)


def count_changes_trimmed(count: int) -> None:
    """Add `count` change-log rows deleted by retention."""
    CHANGES_TRIMMED.inc(count)


def set_outbox_entries(counts: Mapping[str, int]) -> None:
    """Set the outbox gauge to `counts` (status -> entries) counted by the sweep."""
    for status, count in counts.items():
        OUTBOX_ENTRIES.labels(status).set(count)


def scrape_allowed(token: SecretStr | None, authorization: str | None) -> bool:
    """Whether a scrape with this Authorization header may read the metrics: any
    scrape without METRICS_TOKEN (`token`), else only `Bearer <token>`."""
    if token is None:
        return True
    scheme, _, presented = (authorization or "").partition(" ")
    # Constant time, and on bytes: compare_digest's str form refuses non-ASCII, which
    # a client may send.
    matches = hmac.compare_digest(presented.strip().encode(), token.get_secret_value().encode())
    return scheme.lower() == "bearer" and matches


def render_metrics() -> bytes:
    """Every metric of this process in the Prometheus text format."""
    return generate_latest()
