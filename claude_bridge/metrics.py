"""Prometheus metrics: the metric objects, small ``observe_*`` functions the parts call, and the
``GET /metrics`` handler.

The metrics live in their own registry (not the library's global one) so that the bridge exposes
exactly what it documents, plus the process and platform collectors. Gauges that reflect stored
state (backlogs, active threads) are refreshed by the scrape itself, through ``refreshers``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, ParamSpec, TypeVar

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    gc_collector,
    platform_collector,
    process_collector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from claude_bridge.events.catalogue import CATALOGUE
from claude_bridge.log import get_logger

log = get_logger("metrics")

# A ``_created`` series per counter and histogram doubles what is scraped and is not used here.
disable_created_metrics()
REGISTRY = CollectorRegistry()
process_collector.ProcessCollector(registry=REGISTRY)
platform_collector.PlatformCollector(registry=REGISTRY)
gc_collector.GCCollector(registry=REGISTRY)

HOOK_EVENTS = Counter(
    "claude_bridge_hook_events",
    "Hook requests answered, by hook event name and outcome.",
    ["event", "outcome"],
    registry=REGISTRY,
)
HOOK_ACK_SECONDS = Histogram(
    "claude_bridge_hook_ack_seconds",
    "Time from receiving a hook request to answering it (Claude Code waits for this).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
GC_PAUSE_SECONDS = Histogram(
    "claude_bridge_gc_pause_seconds",
    "Pauses of Python's garbage collector, by generation (2: a full collection); the older two "
    "are run at quiet moments (collector.py).",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
MATRIX_SEND_SECONDS = Histogram(
    "claude_bridge_matrix_send_seconds",
    "Latency of Matrix send requests (messages, state events, uploads), by kind and outcome.",
    ["kind", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
DELIVERY_RETRIES = Counter(
    "claude_bridge_delivery_retries",
    "Delivery attempts that will be retried, by cause.",
    ["cause"],
    registry=REGISTRY,
)
COALESCED_LINES = Counter(
    "claude_bridge_coalesced_lines",
    "Hook events shown as one line of a merged message (a burst coalesced) rather than alone.",
    registry=REGISTRY,
)
FOLDED_EVENTS = Counter(
    "claude_bridge_folded_events",
    "Hook events folded (stored, not sent) because their room was over "
    "bridge.mirror.backlog_events behind its session.",
    registry=REGISTRY,
)
OUTBOX_BACKLOG = Gauge(
    "claude_bridge_outbox_backlog", "Hook events stored but not yet in Matrix.", registry=REGISTRY
)
OUTBOX_OLDEST_AGE = Gauge(
    "claude_bridge_outbox_oldest_age_seconds",
    "Age of the oldest hook event not yet in Matrix (0 when none).",
    registry=REGISTRY,
)
INBOX_BACKLOG = Gauge(
    "claude_bridge_inbox_backlog",
    "Matrix events received from the homeserver and not yet processed.",
    registry=REGISTRY,
)
THREADS_ACTIVE = Gauge(
    "claude_bridge_threads_active", "Threads whose session has not ended.", registry=REGISTRY
)
DELIVERY_WORKERS = Gauge(
    "claude_bridge_delivery_workers",
    "Threads with a delivery worker running right now.",
    registry=REGISTRY,
)


class StoredCounts(Collector):
    """Approvals and messages to Claude, counted from their tables at each scrape (the health
    reporter reads them from the store and sets them here).

    The rows are never deleted, so the counts only grow, and they survive restarts, which
    in-process counters would not.
    """

    DECIDED = ("allowed", "allowed_always", "denied")

    def __init__(self) -> None:
        self.approvals: dict[str, int] = {}
        self.messages_to_claude = 0

    def update(self, approvals: Mapping[str, int], messages_to_claude: int) -> None:
        """``approvals``: rows by state; ``messages_to_claude``: messages delivered so far."""
        self.approvals = dict(approvals)
        self.messages_to_claude = messages_to_claude

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "claude_bridge_approvals_pending",
            "Tool approvals waiting for a decision.",
            value=self.approvals.get("pending", 0),
        )
        decided = CounterMetricFamily(
            "claude_bridge_approvals_decided",
            "Tool approvals decided in Matrix, by decision.",
            labels=["decision"],
        )
        for decision in self.DECIDED:
            decided.add_metric([decision], self.approvals.get(decision, 0))
        yield decided
        yield CounterMetricFamily(
            "claude_bridge_approvals_timed_out",
            "Tool approvals nobody decided in time.",
            value=self.approvals.get("timed_out", 0),
        )
        yield CounterMetricFamily(
            "claude_bridge_messages_to_claude",
            "Messages written in Matrix and handed to a Claude Code session.",
            value=self.messages_to_claude,
        )


STORED_COUNTS = StoredCounts()
REGISTRY.register(STORED_COUNTS)

HOOK_EVENT_NAME = web.RequestKey("hook_event_name", str)
"""Set by the hook server once the body parsed, for the labels of ``claude_bridge_hook_events``."""
HOOK_ANSWERED_AT = web.RequestKey("hook_answered_at", float)
"""``perf_counter()`` when a handler wrote its answer itself (``hooks/receipt.py``): the
acknowledgement ends there, not when the handler returns after waiting for the peer's receipt."""

HOOK_OUTCOMES = {
    200: "accepted",
    400: "bad_request",
    401: "unauthorized",
    409: "conflict",
    413: "too_large",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}

# Wall-clock time of the last successful Matrix send; the health report shows its age.
last_send_success: float | None = None


def hook_event_label(name: object) -> str:
    """Event names the catalogue lists as they are; anything else is one label, so a client
    cannot blow up the number of series."""
    if not isinstance(name, str):
        return "unparsed"
    return name if name in CATALOGUE else "other"


def observe_hook(event_name: object, status: int, seconds: float) -> None:
    HOOK_EVENTS.labels(hook_event_label(event_name), HOOK_OUTCOMES.get(status, "error")).inc()
    HOOK_ACK_SECONDS.observe(seconds)


def retry_cause(status: int) -> str:
    if status == 0:
        return "unreachable"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    return "rejected"


def observe_retry(cause: str) -> None:
    DELIVERY_RETRIES.labels(cause).inc()


def observe_matrix_retry(error: Any) -> None:
    """A MatrixError that delivery will retry."""
    observe_retry(retry_cause(int(getattr(error, "status", 0) or 0)))


P = ParamSpec("P")
R = TypeVar("R")


def timed_send(kind: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorate a MatrixClient send method: latency by outcome, and the last success time."""

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            global last_send_success
            started = time.perf_counter()
            try:
                result = await fn(*args, **kwargs)
            except BaseException:
                MATRIX_SEND_SECONDS.labels(kind, "error").observe(time.perf_counter() - started)
                raise
            MATRIX_SEND_SECONDS.labels(kind, "ok").observe(time.perf_counter() - started)
            last_send_success = time.time()
            return result

        return wrapper

    return decorate


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def hook_metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time ``POST /claude/v1/hooks``; the handler leaves the parsed event name in
    ``request[HOOK_EVENT_NAME]``."""
    if request.path != "/claude/v1/hooks" or request.method != "POST":
        return await handler(request)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        ended = request.get(HOOK_ANSWERED_AT) or time.perf_counter()
        observe_hook(request.get(HOOK_EVENT_NAME), status, ended - started)


Refresher = Callable[[], Awaitable[None]]


class MetricsEndpoint:
    """``GET /metrics``: run the refreshers (stored-state gauges), then render the registry."""

    def __init__(self, refreshers: list[Refresher] | None = None) -> None:
        self.refreshers = list(refreshers or [])

    async def handle(self, request: web.Request) -> web.Response:
        for refresh in self.refreshers:
            try:
                await refresh()
            except Exception as e:  # e.g. the database is away: serve the last known values
                log.warning("metrics refresh failed", error=repr(e))
        # The library's negotiation: Prometheus text 0.0.4 unless OpenMetrics is asked for.
        # (The content type carries a charset, which aiohttp's content_type argument refuses.)
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(REGISTRY), headers={"Content-Type": content_type})
