"""The health report behind ``GET /health``, and mautrix's ``/_matrix/mau/live|ready`` kept in step.

``live`` says the process is serving requests. ``ready`` is false until the start-up checks have
passed and whenever the database does not answer: hooks are only acknowledged once stored, so a
bridge without its database cannot do its job. An unreachable homeserver does not make the bridge
unready — hooks are still stored, and delivered when it is back — but the report says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Protocol

from mautrix.util.async_db import Database

from claude_bridge import metrics
from claude_bridge.log import get_logger
from claude_bridge.store import MatrixEventStore, Outbox, ThreadStore
from claude_bridge.store.approvals import ApprovalStore
from claude_bridge.store.database import ping
from claude_bridge.store.session_messages import SessionInbox

log = get_logger("health")


class Probes(Protocol):
    """What mautrix's ``AppService`` serves at ``/_matrix/mau/live`` and ``/ready``."""

    live: bool
    ready: bool


class HomeserverProbe(Protocol):
    async def versions(self) -> dict[str, Any]: ...


class DeliveryStats(Protocol):
    @property
    def active_threads(self) -> int: ...


class HealthReporter:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        matrix_events: MatrixEventStore,
        probes: Probes,
        *,
        timeout: float = 2.0,
        homeserver_cache_seconds: float = 5.0,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.matrix_events = matrix_events
        self.threads = ThreadStore(db)
        self.approvals = ApprovalStore(db)
        self.session_messages = SessionInbox(db)
        self.threads = ThreadStore(db)
        self.probes = probes
        self.timeout = timeout
        self.homeserver_cache_seconds = homeserver_cache_seconds
        self.started = False
        self.homeserver: HomeserverProbe | None = None
        self.delivery: DeliveryStats | None = None
        self._homeserver_checked = 0.0
        self._homeserver_status: dict[str, Any] = {"ok": False, "error": "not checked yet"}
        self._monitor: asyncio.Task[None] | None = None

    def watch_homeserver(self, homeserver: HomeserverProbe) -> None:
        self.homeserver = homeserver
        self._homeserver_checked = 0.0

    def mark_started(self, delivery: DeliveryStats) -> None:
        """The start-up checks passed: from now on readiness follows the database."""
        self.delivery = delivery
        self.started = True
        self.probes.ready = True

    async def report(self) -> dict[str, Any]:
        database = await self._database()
        components: dict[str, Any] = {"database": database}
        components["homeserver"] = await self._homeserver()
        if database["ok"]:
            try:
                components["outbound"], components["inbound"] = await self._queues()
            except Exception as e:  # the database went away between the two queries
                database = components["database"] = {"ok": False, "error": repr(e)}
        ready = self.started and database["ok"]
        self.probes.ready = ready
        return {
            "live": self.probes.live,
            "ready": ready,
            "started": self.started,
            "components": components,
        }

    async def refresh_metrics(self) -> None:
        """Set the stored-state gauges (called by ``GET /metrics``)."""
        report = await self.report()
        outbound = report["components"].get("outbound")
        if outbound:
            metrics.OUTBOX_BACKLOG.set(outbound["backlog"])
            metrics.OUTBOX_OLDEST_AGE.set(outbound["oldest_age_seconds"] or 0)
            metrics.DELIVERY_WORKERS.set(outbound["delivery_workers"])
            metrics.THREADS_ACTIVE.set(outbound["threads_active"])
        inbound = report["components"].get("inbound")
        if inbound:
            metrics.INBOX_BACKLOG.set(inbound["unprocessed"])
        if report["components"]["database"]["ok"]:
            metrics.STORED_COUNTS.update(
                await self.approvals.count_by_state(), await self.session_messages.count_delivered()
            )

    async def _database(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                await ping(self.db)
        except Exception as e:
            return {"ok": False, "error": repr(e) if not isinstance(e, TimeoutError) else "timeout"}
        return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}

    async def _homeserver(self) -> dict[str, Any]:
        now = time.monotonic()
        if self.homeserver and now - self._homeserver_checked > self.homeserver_cache_seconds:
            self._homeserver_checked = now
            try:
                async with asyncio.timeout(self.timeout):
                    await self.homeserver.versions()
                self._homeserver_status = {"ok": True}
            except Exception as e:
                self._homeserver_status = {"ok": False, "error": str(e) or "timeout"}
        last = metrics.last_send_success
        return {
            **self._homeserver_status,
            "last_send_at": _iso(last),
            "last_send_age_seconds": None if last is None else round(time.time() - last, 3),
        }

    async def _queues(self) -> tuple[dict[str, Any], dict[str, Any]]:
        count, oldest = await self.outbox.backlog()
        active = await self.threads.count_active()
        outbound = {
            "backlog": count,
            "oldest_age_seconds": None if oldest is None else round(time.time() - oldest / 1000, 3),
            "delivery_workers": self.delivery.active_threads if self.delivery else 0,
            "threads_active": active,
        }
        return outbound, {"unprocessed": await self.matrix_events.count_unprocessed()}

    def start_monitor(self, interval: float = 10.0) -> None:
        """Re-check now and then, so ``/_matrix/mau/ready`` follows the database even when no one
        asks ``/health``."""
        self._monitor = asyncio.create_task(self._watch(interval), name="health-monitor")

    async def _watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                report = await self.report()
            except Exception:
                log.exception("health check failed")
                self.probes.ready = False
                continue
            if not report["ready"]:
                log.warning("bridge not ready", components=report["components"])

    async def stop(self) -> None:
        self.started = False
        self.probes.ready = False
        if self._monitor:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
