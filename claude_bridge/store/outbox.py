"""The ``hook_event`` outbox: stored hook events and where each stands on its way to Matrix.

A hook event is acknowledged to Claude Code only once it is here; delivery removes it from the
outbox (``state='sent'``) only after every Matrix event it renders to has been sent and recorded
(``sent_events.py``). Reading stored events back for other purposes (context, history, catch-up,
retention) is ``hook_event_log.py``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from mautrix.util.async_db import Database, PostgresDatabase
from mautrix.util.async_db.database import conn_var

from claude_bridge.ids import HookEventID, ThreadID
from claude_bridge.store.database import now_ms
from claude_bridge.store.group_commit import GroupCommit
from claude_bridge.store.loop_writer import LoopWriter
from claude_bridge.store.writes import Write, write_atomically

_APPEND = (
    "INSERT INTO hook_event (thread_id, event_name, payload, token_name, received_at) "
    "VALUES ($1, $2, $3, $4, $5) RETURNING id"
)
# With the shim's Idempotency-Key: nothing (no row returned) if the thread has that key already.
_APPEND_KEYED = (
    "INSERT INTO hook_event "
    "(thread_id, event_name, payload, token_name, received_at, idempotency_key) "
    "VALUES ($1, $2, $3, $4, $5, $6) "
    "ON CONFLICT (thread_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING "
    "RETURNING id"
)
# _APPEND_KEYED over one array per column, for the rows that wait together (group_commit.py): per
# row in the arrays' order, its id, or NULL where the key's conflict stored nothing. Ids are taken
# before the insert (nextval runs after the ORDER BY, so they rise in that order).
_APPEND_MANY = (
    "WITH r AS (SELECT nextval('hook_event_id_seq') AS id, * FROM unnest("
    "$1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[]) WITH ORDINALITY "
    "AS u (thread_id, event_name, payload, token_name, received_at, idempotency_key, n) "
    "ORDER BY n), "
    "stored AS (INSERT INTO hook_event (id, thread_id, event_name, payload, token_name, "
    "received_at, idempotency_key) SELECT id, thread_id, event_name, payload, token_name, "
    "received_at, idempotency_key FROM r "
    "ON CONFLICT (thread_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING "
    "RETURNING id) "
    "SELECT stored.id FROM r LEFT JOIN stored USING (id) ORDER BY r.n"
)
# Delivered: every part is in the room (also written with the last part, sent_events.py).
MARK_SENT = "UPDATE hook_event SET state='sent', sent_at=$2, last_error=NULL WHERE id=$1"


@dataclass(frozen=True)
class PendingEvent:
    id: HookEventID
    thread_id: ThreadID
    event_name: str
    payload: str
    attempts: int
    received_at: int
    folded: str | None = None
    """Set on the first event of a folded backlog: the notice it is sent as (JSON, see
    ``delivery/backlog.py``) instead of what it was."""


@dataclass(frozen=True)
class Waiting:
    """A pending event as the backlog cap sees it: no payload."""

    id: HookEventID
    event_name: str
    carrier: bool
    """It carries a fold notice already."""


class Outbox:
    def __init__(self, db: Database, *, group_commit: bool = True) -> None:
        """``group_commit``: on Postgres, appends that wait at the same time share a commit
        (``group_commit.py``); on SQLite the append runs on the loop (``loop_writer.py``)."""
        self.db = db
        self._on_loop = LoopWriter.for_database(db)
        self._group_commit = group_commit and isinstance(db, PostgresDatabase)
        self._group: GroupCommit | None = None

    async def append(
        self,
        thread_id: str,
        event_name: str,
        payload: str,
        token_name: str | None,
        key: str | None = None,
    ) -> HookEventID:
        """Store one event; with an idempotency ``key`` the thread already holds, store nothing
        and return the id of the event stored under it."""
        # RETURNING works on Postgres and SQLite ≥ 3.35.
        query = _APPEND if key is None else _APPEND_KEYED
        args: tuple[object, ...] = (thread_id, event_name, payload, token_name, now_ms())
        if key is not None:
            args = (*args, key)
        if self._on_loop is not None:  # SQLite: no thread hop unless the lock is taken
            done, value = self._on_loop.fetchval(query, *args)
        elif self._group_commit and conn_var.get() is None:  # not inside a caller's transaction
            # One statement for every row: a missing key is NULL, which conflicts with nothing.
            row = args if key is not None else (*args, None)
            done, value = True, await self._group_writer().insert(*row)
        else:
            done, value = False, None
        if not done:
            value = await self.db.fetchval(query, *args)
        if value is None:  # the key's conflict: the event is stored already
            found = await self.by_key(thread_id, str(key))
            if found is None:
                raise RuntimeError(
                    f"hook event with idempotency key {key!r} neither stored nor found"
                )
            return found
        return HookEventID(int(value))

    async def by_key(self, thread_id: str, key: str) -> HookEventID | None:
        """The event stored for ``thread_id`` under the idempotency ``key``, if any."""
        value = await self.db.fetchval(
            "SELECT id FROM hook_event WHERE thread_id=$1 AND idempotency_key=$2", thread_id, key
        )
        return None if value is None else HookEventID(int(value))

    def _group_writer(self) -> GroupCommit:
        if self._group is None:
            assert isinstance(self.db, PostgresDatabase)
            self._group = GroupCommit(self.db.pool, _APPEND_KEYED, _APPEND_MANY)
        return self._group

    async def close(self) -> None:
        if self._on_loop is not None:
            self._on_loop.close()
        if self._group is not None:
            await self._group.close()

    async def pending(self, thread_id: str, limit: int = 100) -> list[PendingEvent]:
        rows = await self.db.fetch(
            "SELECT id, thread_id, event_name, payload, attempts, received_at, folded "
            "FROM hook_event WHERE thread_id=$1 AND state='pending' ORDER BY id LIMIT $2",
            thread_id,
            limit,
        )
        return [
            PendingEvent(
                HookEventID(r["id"]),
                ThreadID(r["thread_id"]),
                r["event_name"],
                r["payload"],
                r["attempts"],
                r["received_at"],
                r["folded"],
            )
            for r in rows
        ]

    async def waiting(self, thread_id: str) -> list[Waiting]:
        """Every pending event of the thread, oldest first, without payloads."""
        rows = await self.db.fetch(
            "SELECT id, event_name, folded FROM hook_event WHERE thread_id=$1 AND state='pending' "
            "ORDER BY id",
            thread_id,
        )
        return [
            Waiting(HookEventID(r["id"]), r["event_name"], r["folded"] is not None) for r in rows
        ]

    async def fold(
        self, thread_id: str, carrier: int, last: int, keep: Collection[str], notice: str
    ) -> None:
        """Fold the pending events of ``(carrier, last]`` except those named in ``keep`` (they
        stay pending) and those carrying a notice already; ``carrier`` is sent as ``notice``.
        One transaction: the room is told about exactly what was folded."""
        names = sorted(keep)
        marks = ", ".join(f"${i + 5}" for i in range(len(names))) or "''"
        await write_atomically(
            self.db,
            [
                Write(
                    "UPDATE hook_event SET state='folded', sent_at=$4 WHERE thread_id=$1 "
                    "AND state='pending' AND id>$2 AND id<=$3 AND folded IS NULL "
                    f"AND event_name NOT IN ({marks})",
                    (thread_id, carrier, last, now_ms(), *names),
                ),
                Write("UPDATE hook_event SET folded=$2 WHERE id=$1", (carrier, notice)),
            ],
        )

    async def threads_with_pending(self) -> list[ThreadID]:
        rows = await self.db.fetch(
            "SELECT DISTINCT thread_id FROM hook_event WHERE state='pending'"
        )
        return [ThreadID(r["thread_id"]) for r in rows]

    async def mark_sent(self, hook_event_id: int) -> None:
        await self.db.execute(MARK_SENT, hook_event_id, now_ms())

    async def mark_failed(self, hook_event_id: int, error: str) -> None:
        await self.db.execute(
            "UPDATE hook_event SET state='failed', last_error=$2 WHERE id=$1",
            hook_event_id,
            error[:1000],
        )

    async def record_attempt(self, hook_event_id: int, error: str) -> None:
        await self.db.execute(
            "UPDATE hook_event SET attempts=attempts+1, last_error=$2 WHERE id=$1",
            hook_event_id,
            error[:1000],
        )

    async def backlog(self) -> tuple[int, int | None]:
        """Pending events and the receive time (ms) of the oldest."""
        row = await self.db.fetchrow(
            "SELECT COUNT(*) AS n, MIN(received_at) AS oldest FROM hook_event WHERE state='pending'"
        )
        return (int(row["n"]), row["oldest"]) if row else (0, None)
