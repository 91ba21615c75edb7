"""Stored hook events read back after the fact: the context a message is rendered with, history,
catch-up's window, and retention's pruning of delivered payloads (``hook_event``).

The outbox (``outbox.py``) writes these rows and moves them along; this only reads them, except
retention, which blanks payloads long delivered.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from mautrix.util.async_db import Database

from claude_bridge.ids import HookEventID


class HookEventLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def payload(self, hook_event_id: int) -> str | None:
        value = await self.db.fetchval("SELECT payload FROM hook_event WHERE id=$1", hook_event_id)
        return str(value) if value is not None else None

    async def payloads(
        self, thread_id: str, event_name: str, up_to: int, after: int = 0
    ) -> list[str]:
        """The thread's payloads of ``event_name`` in ``(after, up_to]``, oldest first."""
        rows = await self.db.fetch(
            "SELECT payload FROM hook_event WHERE thread_id=$1 AND event_name=$2 AND id<=$3 "
            "AND id>$4 ORDER BY id",
            thread_id,
            event_name,
            up_to,
            after,
        )
        return [r["payload"] for r in rows]

    async def latest_of(
        self, thread_id: str, event_names: tuple[str, ...], before: int
    ) -> tuple[int, str, str] | None:
        """(id, event name, payload) of the thread's newest event of ``event_names`` before the
        event ``before``; ``None`` if there is none."""
        found = await self.recent_of(thread_id, event_names, before, 1)
        return found[0] if found else None

    RECENT_OF_ONE = (
        "SELECT id, event_name, payload FROM hook_event WHERE thread_id=$1 AND event_name=$2 "
        "AND id<$3 ORDER BY id DESC LIMIT $4"
    )
    """One name at a time, so the (thread_id, event_name, id) index answers it: with ``IN``
    over several names SQLite walked the whole thread backwards instead (160–200 ms at 200,000
    events for a compaction's PreCompact/PostCompact)."""

    async def recent_of(
        self, thread_id: str, event_names: tuple[str, ...], before: int, limit: int
    ) -> list[tuple[int, str, str]]:
        """(id, event name, payload) of the thread's newest ``limit`` events of ``event_names``
        before the event ``before``, newest first."""
        found: list[tuple[int, str, str]] = []
        for name in dict.fromkeys(event_names):
            rows = await self.db.fetch(self.RECENT_OF_ONE, thread_id, name, before, limit)
            found += [(int(r["id"]), str(r["event_name"]), str(r["payload"])) for r in rows]
        return sorted(found, reverse=True)[:limit]

    async def last_stored(self) -> tuple[HookEventID, int] | None:
        """Id and receive time (ms) of the newest hook event stored; ``None`` on a new store."""
        row = await self.db.fetchrow(
            "SELECT id, received_at FROM hook_event ORDER BY id DESC LIMIT 1"
        )
        return (HookEventID(row["id"]), int(row["received_at"])) if row else None

    async def payloads_after(self, thread_id: str, after_id: int) -> list[str]:
        """The thread's payloads stored after event ``after_id``, oldest first."""
        rows = await self.db.fetch(
            "SELECT payload FROM hook_event WHERE thread_id=$1 AND id>$2 ORDER BY id",
            thread_id,
            after_id,
        )
        return [r["payload"] for r in rows]

    async def history_before(
        self, thread_id: str, skip: Collection[str], ts: int, before_id: int, limit: int
    ) -> list[Any]:
        """Rows (id, event_name, payload, received_at) of the thread's events older than
        (``ts``, ``before_id``) whose name is not in ``skip`` (constants), newest first."""
        names = ", ".join(f"'{name}'" for name in sorted(skip))
        return list(
            await self.db.fetch(
                "SELECT id, event_name, payload, received_at FROM hook_event "
                f"WHERE thread_id=$1 AND event_name NOT IN ({names}) "
                "AND (received_at < $2 OR (received_at = $2 AND id < $3)) "
                "ORDER BY received_at DESC, id DESC LIMIT $4",
                thread_id,
                ts,
                before_id,
                limit,
            )
        )

    async def prune_delivered_payloads(self, before: int, pruned: str, batch: int) -> int:
        """Retention: replace with ``pruned`` the payloads of events delivered (or folded) and
        received before ``before`` (ms), in batches so no transaction grows long; how many."""
        count = 0
        while True:
            ids = await self.db.fetch(
                "SELECT id FROM hook_event WHERE state IN ('sent', 'folded') AND received_at < $1 "
                "AND payload <> $2 "
                "LIMIT $3",
                before,
                pruned,
                batch,
            )
            if not ids:
                return count
            marks = ", ".join(f"${i + 2}" for i in range(len(ids)))
            await self.db.execute(
                f"UPDATE hook_event SET payload=$1 WHERE id IN ({marks})",
                pruned,
                *(r["id"] for r in ids),
            )
            count += len(ids)
