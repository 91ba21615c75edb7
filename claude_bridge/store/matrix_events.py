"""Matrix events as received: from appservice transactions, stored before Synapse gets its 200.

The event id is the primary key, so the same event delivered again (a retried transaction, or the
same events under a new transaction id) is stored once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mautrix.util.async_db import Database
from mautrix.util.async_db.connection import LoggingConnection

from claude_bridge.store.database import now_ms


@dataclass(frozen=True)
class ReceivedEvent:
    event_id: str
    room_id: str
    sender: str
    event_type: str
    event: dict[str, Any]
    received_at: int

    @classmethod
    def _from_row(cls, r: Any) -> ReceivedEvent:
        return cls(
            r["event_id"],
            r["room_id"],
            r["sender"],
            r["event_type"],
            json.loads(r["event"]),
            r["received_at"],
        )


_SELECT = "SELECT event_id, room_id, sender, event_type, event, received_at FROM matrix_event"


def _is_storable(event: Any) -> bool:
    return isinstance(event, dict) and all(
        isinstance(event.get(k), str) and event.get(k)
        for k in ("event_id", "room_id", "sender", "type")
    )


class MatrixEventStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def store_transaction(
        self, txn_id: str, events: list[Any], *, total: int | None = None
    ) -> int | None:
        """Persist a transaction's events and its id atomically.

        Returns how many events were new, or ``None`` when the transaction was seen before.
        Events without an id, room, sender or type cannot be routed and are skipped; a
        transaction with none to keep (echoes of our own sends, most of the traffic) writes
        nothing: replaying it would change nothing, and every write takes the store's write
        lock that hook acknowledgements wait on (SQLite).
        """
        storable = [event for event in events if _is_storable(event)]
        if not storable:
            return 0
        now = now_ms()
        conn: LoggingConnection
        async with self.db.acquire() as conn, conn.transaction():
            recorded = await conn.fetchval(
                "INSERT INTO appservice_txn (txn_id, received_at, event_count) "
                "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1",
                txn_id,
                now,
                len(events) if total is None else total,
            )
            if not recorded:
                return None
            new = 0
            for event in storable:
                result = await conn.fetchval(
                    "INSERT INTO matrix_event (event_id, room_id, sender, event_type, event, "
                    "txn_id, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7) "
                    "ON CONFLICT DO NOTHING RETURNING 1",
                    event["event_id"],
                    event["room_id"],
                    event["sender"],
                    event["type"],
                    json.dumps(event, ensure_ascii=False),
                    txn_id,
                    now,
                )
                new += 1 if result else 0
        return new

    async def unprocessed(self, limit: int = 100) -> list[ReceivedEvent]:
        rows = await self.db.fetch(
            f"{_SELECT} WHERE processed_at IS NULL ORDER BY received_at, event_id LIMIT $1", limit
        )
        return [ReceivedEvent._from_row(r) for r in rows]

    async def mark_processed(self, event_id: str) -> None:
        await self.db.execute(
            "UPDATE matrix_event SET processed_at=$2 WHERE event_id=$1", event_id, now_ms()
        )

    async def in_room(self, room_id: str, limit: int = 100) -> list[ReceivedEvent]:
        rows = await self.db.fetch(
            f"{_SELECT} WHERE room_id=$1 ORDER BY received_at, event_id LIMIT $2", room_id, limit
        )
        return [ReceivedEvent._from_row(r) for r in rows]

    async def count_unprocessed(self) -> int:
        return int(
            await self.db.fetchval("SELECT COUNT(*) FROM matrix_event WHERE processed_at IS NULL")
        )

    async def messages_before(self, room_id: str, ts: int, before_id: str, limit: int) -> list[Any]:
        """Rows (event_id, sender, event, received_at) of the room's ``m.room.message`` events
        older than (``ts``, ``before_id``) that the bridge did not send itself, newest first."""
        return list(
            await self.db.fetch(
                "SELECT m.event_id, m.sender, m.event, m.received_at FROM matrix_event m "
                "WHERE m.room_id=$1 AND m.event_type='m.room.message' "
                "AND NOT EXISTS (SELECT 1 FROM sent_event s WHERE s.event_id = m.event_id) "
                "AND (m.received_at < $2 OR (m.received_at = $2 AND m.event_id < $3)) "
                "ORDER BY m.received_at DESC, m.event_id DESC LIMIT $4",
                room_id,
                ts,
                before_id,
                limit,
            )
        )

    async def delete_processed_before(self, before: int) -> int:
        """Retention: forget processed events received before ``before`` (ms); how many."""
        where = "processed_at IS NOT NULL AND received_at < $1"
        return await _delete_counted(self.db, "matrix_event", where, before)

    async def delete_transactions_before(self, before: int) -> int:
        """Retention: forget transaction ids received before ``before`` (ms); how many."""
        return await _delete_counted(self.db, "appservice_txn", "received_at < $1", before)


async def _delete_counted(db: Database, table: str, where: str, arg: int) -> int:
    n = int(await db.fetchval(f"SELECT COUNT(*) FROM {table} WHERE {where}", arg) or 0)
    if n:
        await db.execute(f"DELETE FROM {table} WHERE {where}", arg)
    return n
