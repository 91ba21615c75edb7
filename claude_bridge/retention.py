"""Retention (``bridge.retention``): what the bridge no longer needs to keep, pruned hourly.

Payloads of hook events delivered (or folded, ``delivery/backlog.py``) more than N days ago
become ``{"pruned":true}``; processed Matrix events and transaction ids as old are deleted.
Threads, rooms and the hook event → Matrix event mapping stay; what is gone from the bridge is
still in the Matrix rooms.
"""

from __future__ import annotations

import asyncio
import contextlib

from mautrix.util.async_db import Database

from claude_bridge.log import get_logger
from claude_bridge.store import HookEventLog, MatrixEventStore
from claude_bridge.store.database import now_ms

log = get_logger("retention")

PRUNED_PAYLOAD = '{"pruned":true}'
DAY_MS = 86_400_000


async def prune(
    db: Database, days: int, now: int | None = None, batch: int = 1000
) -> dict[str, int]:
    """Retention: drop the payloads of hook events delivered more than ``days`` ago, and processed
    Matrix events and transaction ids as old. Threads and event-id mappings stay."""
    cutoff = (now or now_ms()) - days * DAY_MS
    return {
        "hook_event": await HookEventLog(db).prune_delivered_payloads(
            cutoff, PRUNED_PAYLOAD, batch
        ),
        "matrix_event": await MatrixEventStore(db).delete_processed_before(cutoff),
        "appservice_txn": await MatrixEventStore(db).delete_transactions_before(cutoff),
    }


class RetentionPruner:
    """Runs :func:`prune` at start and then hourly while the bridge runs."""

    def __init__(self, db: Database, days: int, interval: float = 3600.0) -> None:
        self.db = db
        self.days = days
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="retention")

    async def _run(self) -> None:
        while True:
            try:
                pruned = await prune(self.db, self.days)
                if any(pruned.values()):
                    log.info("retention pruned old data", days=self.days, **pruned)
            except Exception as e:
                log.warning("retention pruning failed; will try again", error=repr(e))
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
