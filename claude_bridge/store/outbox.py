"""The ``hook_event`` outbox and the Matrix events each hook event became (``sent_event``).

A hook event is acknowledged to Claude Code only once it is here; delivery removes it from the
outbox (``state='sent'``) only after every Matrix event it renders to has been sent and recorded.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from mautrix.util.async_db import Database, PostgresDatabase
from mautrix.util.async_db.database import conn_var

from claude_bridge.ids import HookEventID, ThreadID
from claude_bridge.store.database import now_ms
from claude_bridge.store.group_commit import GroupCommit
from claude_bridge.store.loop_writer import LoopWriter
from claude_bridge.store.merged_lines import Line, dump_lines, load_lines
from claude_bridge.store.writes import Write, write_atomically

_INSERT_SENT = (
    "INSERT INTO sent_event (hook_event_id, part, thread_id, anchor, event_id) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
)
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
_MARK_SENT = "UPDATE hook_event SET state='sent', sent_at=$2, last_error=NULL WHERE id=$1"


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

    async def sent_parts(self, hook_event_id: int) -> dict[int, str]:
        rows = await self.db.fetch(
            "SELECT part, event_id FROM sent_event WHERE hook_event_id=$1", hook_event_id
        )
        return {r["part"]: r["event_id"] for r in rows}

    async def record_part(
        self,
        hook_event_id: int,
        part: int,
        thread_id: str,
        anchor: str | None,
        event_id: str,
        *,
        last: bool = False,
    ) -> None:
        """Record one sent part; ``last``: it was the event's last, so the event is sent too
        (one transaction: no window where the event is sent but the part unrecorded)."""
        args = (hook_event_id, part, thread_id, anchor, event_id)
        if not last:
            await self.db.execute(_INSERT_SENT, *args)
            return
        sent = Write(_MARK_SENT, (hook_event_id, now_ms()))
        await write_atomically(self.db, [Write(_INSERT_SENT, args), sent])

    async def record_lines(
        self, thread_id: str, event_id: str, lines: list[Line], complete: Sequence[int] = ()
    ) -> None:
        """A merged message (``coalesce.py``) was sent: record each line as its hook event's part,
        and the lines themselves, in one transaction (all of it is in the room, or none).
        ``complete``: hook events that were nothing but their line, now sent."""
        rows = [(x.hook_event, x.part, thread_id, x.anchor, event_id) for x in lines]
        await self._record_merged(rows, complete, (event_id, thread_id, dump_lines(lines)))

    async def record_parts(
        self,
        thread_id: str,
        event_id: str,
        parts: Sequence[tuple[int, int]],
        complete: Sequence[int] = (),
    ) -> None:
        """A merged thread reply was sent: record it as each (hook event, part) it holds."""
        rows = [(hook_event, part, thread_id, None, event_id) for hook_event, part in parts]
        await self._record_merged(rows, complete, None)

    async def _record_merged(
        self,
        rows: Sequence[tuple[int, int, str, str | None, str]],
        complete: Sequence[int],
        merged: tuple[str, str, str] | None,
    ) -> None:
        writes = [Write(_INSERT_SENT, rows=rows)]
        if merged is not None:
            writes.append(
                Write(
                    "INSERT INTO merged_message (event_id, thread_id, lines) VALUES ($1, $2, $3) "
                    "ON CONFLICT (event_id) DO NOTHING",
                    merged,
                )
            )
        if complete:
            marks = ", ".join(f"${i + 2}" for i in range(len(complete)))
            writes.append(
                Write(
                    "UPDATE hook_event SET state='sent', sent_at=$1, last_error=NULL "
                    f"WHERE id IN ({marks})",
                    (now_ms(), *complete),
                )
            )
        await write_atomically(self.db, writes)

    async def set_lines(self, event_id: str, lines: list[Line]) -> None:
        await self.db.execute(
            "UPDATE merged_message SET lines=$2 WHERE event_id=$1", event_id, dump_lines(lines)
        )

    async def anchor_target(
        self, thread_id: str, anchor: str
    ) -> tuple[str | None, list[Line] | None]:
        """The first event recorded under ``anchor`` (edits refer to the original) and, when it
        is a merged message, its lines."""
        row = await self.db.fetchrow(
            "SELECT s.event_id, m.lines FROM sent_event s "
            "LEFT JOIN merged_message m ON m.event_id = s.event_id "
            "WHERE s.thread_id=$1 AND s.anchor=$2 ORDER BY s.hook_event_id, s.part LIMIT 1",
            thread_id,
            anchor,
        )
        if row is None:
            return None, None
        return row["event_id"], load_lines(row["lines"]) if row["lines"] else None

    async def mark_sent(self, hook_event_id: int) -> None:
        await self.db.execute(_MARK_SENT, hook_event_id, now_ms())

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

    async def payloads(self, thread_id: str, event_name: str, up_to: int) -> list[str]:
        rows = await self.db.fetch(
            "SELECT payload FROM hook_event WHERE thread_id=$1 AND event_name=$2 AND id<=$3 "
            "ORDER BY id",
            thread_id,
            event_name,
            up_to,
        )
        return [r["payload"] for r in rows]

    async def latest_of(
        self, thread_id: str, event_names: tuple[str, ...], before: int
    ) -> tuple[int, str, str] | None:
        """(id, event name, payload) of the thread's newest event of ``event_names`` before the
        event ``before``; ``None`` if there is none."""
        found = await self.recent_of(thread_id, event_names, before, 1)
        return found[0] if found else None

    async def recent_of(
        self, thread_id: str, event_names: tuple[str, ...], before: int, limit: int
    ) -> list[tuple[int, str, str]]:
        """(id, event name, payload) of the thread's newest ``limit`` events of ``event_names``
        before the event ``before``, newest first."""
        marks = ", ".join(f"${i + 4}" for i in range(len(event_names)))
        rows = await self.db.fetch(
            "SELECT id, event_name, payload FROM hook_event WHERE thread_id=$1 AND id<$2 "
            f"AND event_name IN ({marks}) ORDER BY id DESC LIMIT $3",
            thread_id,
            before,
            limit,
            *event_names,
        )
        return [(int(r["id"]), str(r["event_name"]), str(r["payload"])) for r in rows]

    async def payload(self, hook_event_id: int) -> str | None:
        value = await self.db.fetchval("SELECT payload FROM hook_event WHERE id=$1", hook_event_id)
        return str(value) if value is not None else None

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

    async def sent_event_ids(self, hook_ids: Sequence[int]) -> dict[int, list[str]]:
        """The Matrix event ids each of ``hook_ids`` became, in part order."""
        if not hook_ids:
            return {}
        marks = ", ".join(f"${i}" for i in range(1, len(hook_ids) + 1))
        rows = await self.db.fetch(
            f"SELECT hook_event_id, event_id FROM sent_event WHERE hook_event_id IN ({marks}) "
            "ORDER BY hook_event_id, part",
            *hook_ids,
        )
        found: dict[int, list[str]] = {}
        for r in rows:
            found.setdefault(r["hook_event_id"], []).append(r["event_id"])
        return found

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
