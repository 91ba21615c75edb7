"""The ``session_message`` table: what operators wrote to a session, until a hook answer carries it.

A message is ``queued`` when its Matrix event is handled, ``delivered`` by exactly one hook answer
(claimed with one conditional UPDATE, so two concurrent hooks of a session can never both carry
it), or ``withdrawn`` (redacted, or its thread archived, before that). ``shown_at`` records that
the room was told (the ✓ reaction).

A hand-off from another session (``from_thread`` set) starts ``proposed`` unless the config lets
it through directly: an operator's ✅ makes it ``queued`` (``approved_by``), ❌ ``rejected``; one
nobody decides in time becomes ``expired``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from mautrix.util.async_db import Database

from claude_bridge.store.database import now_ms
from claude_bridge.store.hints import MaybeRows

_COLUMNS = (
    "id, event_id, thread_id, room_id, sender, body, state, received_at, delivered_via, "
    "from_thread, approved_by, proposal_event, file_name, file_type, file_size, file_store, "
    "file_path, file_fetched_at"
)
QUEUED, PROPOSED, REJECTED, EXPIRED = "queued", "proposed", "rejected", "expired"


@dataclass(frozen=True)
class StoredFile:
    name: str
    type: str
    size: int
    store: str


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
    from_thread: str | None = None
    """The session whose Claude wrote it (a hand-off); None: a person wrote it."""
    approved_by: str | None = None
    proposal_event: str | None = None
    file_name: str | None = None
    """An attachment (``control/attachments.py``): its sanitised name; the body is its caption."""
    file_type: str | None = None
    file_size: int | None = None
    file_store: str | None = None
    """Where the bridge keeps its bytes (relative to ``bridge.attachments.directory``)."""
    file_path: str | None = None
    """The path Claude was given on its host."""
    file_fetched_at: int | None = None
    """When the file was written where Claude reads it: the ✓ waits for this."""

    @property
    def has_file(self) -> bool:
        return self.file_store is not None

    @classmethod
    def _from_row(cls, r: Any) -> SessionMessage:
        return cls(*(r[c.strip()] for c in _COLUMNS.split(",")))


class SessionInbox:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Threads that may have queued messages: most hook answers then need no query.
        self.queued_hint = MaybeRows()

    async def _one(self, sql: str, *args: Any) -> SessionMessage | None:
        """The message the query's (first) row holds, if any: every column of ``_COLUMNS``."""
        row = await self.db.fetchrow(sql, *args)
        return SessionMessage._from_row(row) if row else None

    async def _many(self, sql: str, *args: Any) -> list[SessionMessage]:
        return [SessionMessage._from_row(r) for r in await self.db.fetch(sql, *args)]

    async def _changed(self, sql: str, *args: Any) -> list[SessionMessage]:
        """The messages an ``UPDATE … RETURNING`` changed: they come in no order, so by id."""
        return sorted(await self._many(sql, *args), key=lambda m: m.id)

    async def _did(self, sql: str, *args: Any) -> bool:
        """Whether a statement ending ``RETURNING 1`` touched a row."""
        return bool(await self.db.fetchval(sql, *args))

    async def load_hint(self) -> None:
        rows = await self.db.fetch(
            "SELECT DISTINCT thread_id FROM session_message WHERE state='queued'"
        )
        self.queued_hint.load(r["thread_id"] for r in rows)

    async def queue(
        self,
        event_id: str,
        thread_id: str,
        room_id: str,
        sender: str,
        body: str,
        *,
        from_thread: str | None = None,
        state: str = QUEUED,
        file: StoredFile | None = None,
    ) -> bool:
        """Queue (or propose) a message; False when this Matrix event was stored before."""
        with self.queued_hint.adding(thread_id):
            return await self._did(
                "INSERT INTO session_message "
                "(event_id, thread_id, room_id, sender, body, received_at, from_thread, state, "
                "file_name, file_type, file_size, file_store) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
                "ON CONFLICT DO NOTHING RETURNING 1",
                event_id,
                thread_id,
                room_id,
                sender,
                body,
                now_ms(),
                from_thread,
                state,
                file.name if file else None,
                file.type if file else None,
                file.size if file else None,
                file.store if file else None,
            )

    async def file_bytes(self, thread_id: str) -> int:
        """Bytes of the files this thread holds (queued or delivered, not yet pruned)."""
        value = await self.db.fetchval(
            "SELECT COALESCE(SUM(file_size), 0) FROM session_message WHERE thread_id=$1 "
            "AND file_store IS NOT NULL AND state IN ('queued', 'delivered')",
            thread_id,
        )
        return int(value or 0)

    async def set_file_path(self, message_id: int, path: str, *, fetched: bool) -> None:
        """The path Claude is given; ``fetched``: it is already written there (a local token)."""
        await self.db.execute(
            "UPDATE session_message SET file_path=$2, file_fetched_at=$3 WHERE id=$1",
            message_id,
            path,
            now_ms() if fetched else None,
        )

    async def delivered_file(self, thread_id: str, message_id: int) -> SessionMessage | None:
        """A file of this thread already handed to a hook answer (the only ones a host fetches)."""
        return await self._one(
            f"SELECT {_COLUMNS} FROM session_message WHERE id=$1 AND thread_id=$2 "
            "AND state='delivered' AND file_store IS NOT NULL",
            message_id,
            thread_id,
        )

    ATTACHED_AT = (
        f"SELECT {_COLUMNS} FROM session_message WHERE thread_id=$1 AND file_path=$2 "
        "AND state='delivered' AND file_store IS NOT NULL ORDER BY id DESC LIMIT 1"
    )
    """Asked on every Read permission request: by index (migration 18)."""

    async def attached_at(self, thread_id: str, path: str) -> SessionMessage | None:
        """The file of this thread whose host path is exactly ``path``: handed to Claude (its
        text named the path) and still held by the bridge."""
        return await self._one(self.ATTACHED_AT, thread_id, path)

    async def mark_fetched(self, message_id: int) -> bool:
        """The host wrote the file: the ✓ may follow. False when it was marked before."""
        return await self._did(
            "UPDATE session_message SET file_fetched_at=$2 WHERE id=$1 "
            "AND file_fetched_at IS NULL RETURNING 1",
            message_id,
            now_ms(),
        )

    async def expired_files(self, cutoff: int, limit: int = 500) -> list[SessionMessage]:
        """Files of threads that ended or went quiet before ``cutoff`` (ms), still stored."""
        return await self._many(
            f"SELECT {', '.join('m.' + c.strip() for c in _COLUMNS.split(','))} "
            "FROM session_message m JOIN thread t ON t.id = m.thread_id "
            "WHERE m.file_store IS NOT NULL AND t.updated_at < $1 ORDER BY m.id LIMIT $2",
            cutoff,
            limit,
        )

    async def forget_file(self, message_id: int) -> None:
        """Its bytes are deleted: a file still queued can no longer go, so it is withdrawn."""
        await self.db.execute(
            "UPDATE session_message SET file_store=NULL, state=CASE WHEN state='queued' "
            "THEN 'withdrawn' ELSE state END WHERE id=$1",
            message_id,
        )

    async def proposals(self, thread_id: str, limit: int = 10) -> list[SessionMessage]:
        """Hand-offs of this thread still waiting for an operator's decision, oldest first."""
        return await self._many(
            f"SELECT {_COLUMNS} FROM session_message WHERE thread_id=$1 AND state='proposed' "
            "ORDER BY id LIMIT $2",
            thread_id,
            limit,
        )

    async def waiting_proposals(self, thread_id: str) -> tuple[int, int | None]:
        """How many hand-offs of this thread wait for a decision, and when (ms) the oldest came."""
        row = await self.db.fetchrow(
            "SELECT COUNT(*) AS n, MIN(received_at) AS oldest FROM session_message "
            "WHERE thread_id=$1 AND state='proposed'",
            thread_id,
        )
        return (int(row["n"]), row["oldest"]) if row else (0, None)

    async def stored(self, event_ids: Collection[str]) -> set[str]:
        """Those of ``event_ids`` that are stored as messages (in any state)."""
        if not event_ids:
            return set()
        ids = sorted(event_ids)
        marks = ", ".join(f"${i + 1}" for i in range(len(ids)))
        rows = await self.db.fetch(
            f"SELECT event_id FROM session_message WHERE event_id IN ({marks})", *ids
        )
        return {r["event_id"] for r in rows}

    async def expire_proposals(self, received_before: int) -> list[SessionMessage]:
        """Hand-offs still waiting that came before ``received_before`` (ms): now ``expired``.
        One statement: a decision taken meanwhile wins, and each is expired once."""
        return await self._changed(
            "UPDATE session_message SET state='expired' WHERE state='proposed' "
            f"AND received_at < $1 RETURNING {_COLUMNS}",
            received_before,
        )

    async def set_proposal_event(self, message_id: int, event_id: str) -> None:
        await self.db.execute(
            "UPDATE session_message SET proposal_event=$2 WHERE id=$1", message_id, event_id
        )

    async def proposal(self, thread_id: str, event_id: str) -> SessionMessage | None:
        """The hand-off of this thread that ``event_id`` (it, or the notice about it) names."""
        return await self._one(
            f"SELECT {_COLUMNS} FROM session_message WHERE thread_id=$1 AND from_thread IS NOT "
            "NULL AND (event_id=$2 OR proposal_event=$2)",
            thread_id,
            event_id,
        )

    async def decide_proposal(self, message: SessionMessage, approve: bool, by: str) -> bool:
        """Let a proposed hand-off through (queued) or reject it; False when already decided."""
        with self.queued_hint.adding(message.thread_id):
            return await self._did(
                "UPDATE session_message SET state=$2, approved_by=$3 "
                "WHERE id=$1 AND state='proposed' RETURNING 1",
                message.id,
                QUEUED if approve else REJECTED,
                by if approve else None,
            )

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

    async def count_delivered(self) -> int:
        """Messages handed to Claude so far, for the metrics; 0 before the table exists."""
        if not await self.db.table_exists("session_message"):
            return 0
        return int(
            await self.db.fetchval(
                "SELECT COUNT(*) FROM session_message WHERE delivered_at IS NOT NULL"
            )
            or 0
        )

    async def queued_by_thread(self) -> dict[str, int]:
        """How many messages each thread has queued (threads with none are left out)."""
        rows = await self.db.fetch(
            "SELECT thread_id, COUNT(*) AS n FROM session_message WHERE state='queued' "
            "GROUP BY thread_id"
        )
        return {r["thread_id"]: int(r["n"]) for r in rows}

    async def claim_through(
        self, thread_id: str, last_id: int, via: str, hook_event_id: int | None
    ) -> list[SessionMessage]:
        """Mark every still-queued message up to ``last_id`` delivered; return the ones we got.

        One statement: a message another hook claimed meanwhile is simply not returned here.
        """
        return await self._changed(
            "UPDATE session_message SET state='delivered', delivered_at=$3, delivered_via=$4, "
            "delivered_by=$5 WHERE thread_id=$1 AND state='queued' AND id<=$2 "
            f"RETURNING {_COLUMNS}",
            thread_id,
            last_id,
            now_ms(),
            via,
            hook_event_id,
        )

    async def requeue(self, message_id: int, thread_id: str, via: str) -> SessionMessage | None:
        """Put a message claimed by ``via`` back in its queue (the path that claimed it never
        carried it). Its ✓ stays: it was shown once, and the next path carries it."""
        with self.queued_hint.adding(thread_id):
            row = await self.db.fetchrow(
                "UPDATE session_message SET state='queued', delivered_at=NULL, "
                "delivered_via=NULL, delivered_by=NULL, file_path=NULL, file_fetched_at=NULL "
                "WHERE id=$1 AND thread_id=$2 "
                f"AND state='delivered' AND delivered_via=$3 RETURNING {_COLUMNS}",
                message_id,
                thread_id,
                via,
            )
        return SessionMessage._from_row(row) if row else None

    async def delivered_via(self, via: str, since: int) -> list[SessionMessage]:
        """Messages claimed by ``via`` since ``since`` (ms), oldest first."""
        return await self._many(
            f"SELECT {_COLUMNS} FROM session_message WHERE state='delivered' AND delivered_via=$1 "
            "AND delivered_at >= $2 ORDER BY id",
            via,
            since,
        )

    async def withdraw(self, event_id: str, thread_id: str) -> SessionMessage | None:
        """Withdraw a message of this thread not delivered yet (its event was redacted)."""
        return await self._one(
            "UPDATE session_message SET state='withdrawn' WHERE event_id=$1 AND thread_id=$2 "
            f"AND state IN ('queued', 'proposed') RETURNING {_COLUMNS}",
            event_id,
            thread_id,
        )

    async def withdraw_thread(self, thread_id: str) -> int:
        rows = await self.db.fetch(
            "UPDATE session_message SET state='withdrawn' WHERE thread_id=$1 AND state='queued' "
            "RETURNING id",
            thread_id,
        )
        return len(rows)

    async def edit(self, event_id: str, thread_id: str, sender: str, body: str) -> bool:
        """Apply an edit (``m.replace``) by the sender to their message still in this queue."""
        return await self._did(
            "UPDATE session_message SET body=$4 WHERE event_id=$1 AND thread_id=$2 AND sender=$3 "
            "AND state='queued' AND from_thread IS NULL RETURNING 1",
            event_id,
            thread_id,
            sender,
            body,
        )

    async def get(self, event_id: str) -> SessionMessage | None:
        return await self._one(
            f"SELECT {_COLUMNS} FROM session_message WHERE event_id=$1", event_id
        )

    async def unshown(self, limit: int = 100) -> list[SessionMessage]:
        return await self._many(
            f"SELECT {_COLUMNS} FROM session_message WHERE state='delivered' AND shown_at IS NULL "
            "AND (file_name IS NULL OR file_fetched_at IS NOT NULL) ORDER BY id LIMIT $1",
            limit,
        )

    async def mark_shown(self, message_id: int) -> None:
        await self.db.execute(
            "UPDATE session_message SET shown_at=$2 WHERE id=$1", message_id, now_ms()
        )
