"""Coming back from an outage at once, not at the end of somebody's backoff.

Two backoffs stretch an outage well past its end: delivery's own (up to 30 s between retries) and
Synapse's for transactions it could not push to us (it marks the appservice down and retries
after 2, 4, 8, 16, 32 … s). So when a part reports trouble — delivery got a temporary homeserver
error or could not read the outbox, or the transaction endpoint could not store a transaction —
this watch probes once a second until the database and the homeserver answer, then

1. resumes delivery (ends every retry's backoff now), and
2. pings the appservice (``POST /_matrix/client/v1/appservice/{id}/ping``). A successful ping makes
   Synapse retry its queued transactions immediately (``force_retry`` in its appservice
   scheduler), so a message sent in a room during our outage arrives when the outage ends.

A failure that is not an outage (the probes pass at once) resumes nothing: delivery's backoff
stands. Pings are spaced out when they do not help (a transaction that keeps failing to store).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from claude_bridge.log import get_logger
from claude_bridge.matrix.client import MatrixClient
from claude_bridge.worker import Worker

log = get_logger("recovery")

PROBE_INTERVAL = 1.0
PING_GAP_MAX = 60.0
"""A ping followed within ``PING_FUTILE`` s by another storage failure did not help: wait longer
before the next one, up to this."""
PING_FUTILE = 10.0


class RecoveryWatch(Worker):
    name = "recovery"
    wake_on_start = False  # woken by the first failure

    def __init__(
        self,
        client: MatrixClient,
        appservice_id: str,
        *,
        probe_db: Callable[[], Awaitable[Any]],
        on_recovered: Callable[[], None],
        interval: float = PROBE_INTERVAL,
    ) -> None:
        super().__init__()
        self.client = client
        self.appservice_id = appservice_id
        self.probe_db = probe_db
        self.on_recovered = on_recovered
        self.interval = interval
        self.pings = 0
        self._ping_owed = False
        self._ping_gap = interval
        self._last_ping = 0.0

    def failed(self) -> None:
        """Delivery hit a temporary failure (homeserver unreachable or 5xx, database away)."""
        self._wake.set()

    def transaction_failed(self) -> None:
        """A transaction from the homeserver was answered 500: it now backs off from us."""
        now = time.monotonic()
        if self._last_ping and now - self._last_ping < PING_FUTILE:
            self._ping_gap = min(self._ping_gap * 2, PING_GAP_MAX)
        else:
            self._ping_gap = self.interval
        self._ping_owed = True
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            started = time.monotonic()
            outage = await self._wait_until_reachable()
            if outage:
                log.info(
                    "database and homeserver answer again; delivery resumed",
                    outage_s=round(time.monotonic() - started, 1),
                )
                self.on_recovered()
            if outage or self._ping_owed:
                await self._ping()

    async def _wait_until_reachable(self) -> bool:
        """Probe until both answer; True if at least one probe failed (a real outage)."""
        failures = 0
        while True:
            await asyncio.sleep(self.interval)
            self._wake.clear()  # failures reported from here on start a new round
            try:
                await self.probe_db()
                await self.client.versions()
                return failures > 0
            except Exception as e:
                if failures == 0:
                    log.warning("database or homeserver unreachable; probing", error=repr(e))
                failures += 1

    async def _ping(self) -> None:
        wait = self._last_ping + self._ping_gap - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_ping = time.monotonic()
        try:
            ms = await self.client.ping(self.appservice_id, txn_id=f"recovery-{time.time_ns()}")
        except Exception as e:
            log.warning("recovery ping failed; will try again", error=repr(e))
            self._wake.set()
            return
        self._ping_owed = False
        self.pings += 1
        log.info("pinged the appservice: the homeserver retries its queued transactions", ms=ms)
