"""The ``session_message`` table: what operators wrote to a session, until a hook answer carries it.

A message is ``queued`` when its Matrix event is handled, ``delivered`` by exactly one hook answer
(claimed with one conditional UPDATE, so two concurrent hooks of a session can never both carry
it), or ``withdrawn`` (redacted, or its thread archived, before that). ``shown_at`` records that
the room was told (the ✓ reaction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mautrix.util.async_db import Database

from claude_bridge.store.database import now_ms
from claude_bridge.store.hints import MaybeRows

_COLUMNS = "id, event_id, thread_id, room_id, sender, body, state, received_at, delivered_via"


@dataclass(frozen=True)
class SessionMessage:
    id: int
    event_id: str
    thread_id: str
    room_id: str
    sender: str
    body: str
    state: str
    received_at: int
    delivered_via: str | None = None

    @classmethod
    def _from_row(cls, r: Any) -> SessionMessage:
        return cls(*(r[c.strip()] for c in _COLUMNS.split(",")))


class SessionInbox:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Threads that may have queued messages: most hook answers then need no query.
        self.queued_hint = MaybeRows()

    async def load_hint(self) -> None:
        rows = await self.db.fetch(
            "SELECT DISTINCT thread_id FROM session_message WHERE state='queued'"
        )
        self.queued_hint.load(r["thread_id"] for r in rows)

    async def queue(
        self, event_id: str, thread_id: str, room_id: str, sender: str, body: str
    ) -> bool:
        """Queue a message; False when this Matrix event was queued before (a replay)."""
        with self.queued_hint.adding(thread_id):
            added = await self.db.fetchval(
                "INSERT INTO session_message "
                "(event_id, thread_id, room_id, sender, body, received_at) "
                "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING 1",
                event_id,
                thread_id,
                room_id,
                sender,
                body,
                now_ms(),
            )
        return bool(added)

    async def queued(self, thread_id: str, limit: int = 100) -> list[SessionMessage]:
        if not self.queued_hint.may_have(thread_id):
            return []
        before = self.queued_hint.before_query()
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM session_message WHERE thread_id=$1 AND state='queued' "
            "ORDER BY id LIMIT $2",
            thread_id,
            limit,
        )
        if not rows:
            self.queued_hint.found_none(thread_id, before)
        return [SessionMessage._from_row(r) for r in rows]

    async def count_queued(self, thread_id: str | None = None) -> int:
        if thread_id is None:
            return int(
                await self.db.fetchval("SELECT COUNT(*) FROM session_message WHERE state='queued'")
            )
        if not self.queued_hint.may_have(thread_id):
            return 0
        return int(
            await self.db.fetchval(
                "SELECT COUNT(*) FROM session_message WHERE thread_id=$1 AND state='queued'",
                thread_id,
            )
        )

    async def claim_through(
        self, thread_id: str, last_id: int, via: str, hook_event_id: int | None
    ) -> list[SessionMessage]:
        """Mark every still-queued message up to ``last_id`` delivered; return the ones we got.

        One statement: a message another hook claimed meanwhile is simply not returned here.
        """
        rows = await self.db.fetch(
            "UPDATE session_message SET state='delivered', delivered_at=$3, delivered_via=$4, "
            "delivered_by=$5 WHERE thread_id=$1 AND state='queued' AND id<=$2 "
            f"RETURNING {_COLUMNS}",
            thread_id,
            last_id,
            now_ms(),
            via,
            hook_event_id,
        )
        return sorted((SessionMessage._from_row(r) for r in rows), key=lambda m: m.id)

    async def withdraw(self, event_id: str) -> SessionMessage | None:
        """Withdraw a message that was not delivered yet (its event was redacted)."""
        row = await self.db.fetchrow(
            "UPDATE session_message SET state='withdrawn' WHERE event_id=$1 AND state='queued' "
            f"RETURNING {_COLUMNS}",
            event_id,
        )
        return SessionMessage._from_row(row) if row else None

    async def withdraw_thread(self, thread_id: str) -> int:
        rows = await self.db.fetch(
            "UPDATE session_message SET state='withdrawn' WHERE thread_id=$1 AND state='queued' "
            "RETURNING id",
            thread_id,
        )
        return len(rows)

    async def edit(self, event_id: str, sender: str, body: str) -> bool:
        """Apply an edit (``m.replace``) by the sender to a message still in the queue."""
        row = await self.db.fetchval(
            "UPDATE session_message SET body=$3 WHERE event_id=$1 AND sender=$2 AND state='queued' "
            "RETURNING 1",
            event_id,
            sender,
            body,
        )
        return bool(row)

    async def get(self, event_id: str) -> SessionMessage | None:
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM session_message WHERE event_id=$1", event_id
        )
        return SessionMessage._from_row(row) if row else None

    async def unshown(self, limit: int = 100) -> list[SessionMessage]:
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM session_message WHERE state='delivered' AND shown_at IS NULL "
            "ORDER BY id LIMIT $1",
            limit,
        )
        return [SessionMessage._from_row(r) for r in rows]

    async def mark_shown(self, message_id: int) -> None:
        await self.db.execute(
            "UPDATE session_message SET shown_at=$2 WHERE id=$1", message_id, now_ms()
        )
