"""The ``thread_control`` table: per-thread steering state set from Matrix.

Listen mode, mute, a pending stop request, the count of consecutive Stop blocks (Claude Code
ignores blocks past its cap, so a message must never ride on one), and archival. A thread without
a row has the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mautrix.util.async_db import Database

from claude_bridge.store.database import now_ms
from claude_bridge.store.hints import MaybeRows

_COLUMNS = (
    "thread_id, listen_until, listen_by, muted, stop_requested_by, stop_requested_at, "
    "stop_blocks, archived_by, archived_at"
)


@dataclass(frozen=True)
class ThreadControl:
    thread_id: str
    listen_until: int | None = None
    listen_by: str | None = None
    muted: bool = False
    stop_requested_by: str | None = None
    stop_requested_at: int | None = None
    stop_blocks: int = 0
    archived_by: str | None = None
    archived_at: int | None = None

    def listening(self, now: int) -> bool:
        return self.listen_until is not None and self.listen_until > now

    @property
    def stop_requested(self) -> bool:
        return self.stop_requested_at is not None

    @classmethod
    def _from_row(cls, r: Any) -> ThreadControl:
        values = {c.strip(): r[c.strip()] for c in _COLUMNS.split(",")}
        values["muted"] = bool(values["muted"])
        return cls(**values)


class ThreadControlStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Threads that may have a stop request pending: most hook answers then need no query.
        self.stop_hint = MaybeRows()

    async def load_hint(self) -> None:
        rows = await self.db.fetch(
            "SELECT thread_id FROM thread_control WHERE stop_requested_at IS NOT NULL"
        )
        self.stop_hint.load(r["thread_id"] for r in rows)

    def may_have_stop(self, thread_id: str) -> bool:
        """False only when the thread surely has no stop request pending."""
        return self.stop_hint.may_have(thread_id)

    async def get(self, thread_id: str) -> ThreadControl:
        before = self.stop_hint.before_query()
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM thread_control WHERE thread_id=$1", thread_id
        )
        control = ThreadControl._from_row(row) if row else ThreadControl(thread_id)
        if not control.stop_requested:
            self.stop_hint.found_none(thread_id, before)
        return control

    async def _set(self, thread_id: str, assignments: str, *values: Any) -> None:
        # Upsert one thread's row: the same statement text works on Postgres and SQLite.
        await self.db.execute(
            "INSERT INTO thread_control (thread_id) VALUES ($1) ON CONFLICT DO NOTHING", thread_id
        )
        await self.db.execute(
            f"UPDATE thread_control SET {assignments} WHERE thread_id=$1", thread_id, *values
        )

    async def set_listen(self, thread_id: str, until: int | None, by: str | None) -> None:
        await self._set(thread_id, "listen_until=$2, listen_by=$3", until, by)

    async def set_muted(self, thread_id: str, muted: bool) -> None:
        await self._set(thread_id, "muted=$2", muted)

    async def muted_threads(self) -> set[str]:
        rows = await self.db.fetch("SELECT thread_id FROM thread_control WHERE muted")
        return {r["thread_id"] for r in rows}

    async def request_stop(self, thread_id: str, by: str) -> None:
        with self.stop_hint.adding(thread_id):
            await self._set(thread_id, "stop_requested_by=$2, stop_requested_at=$3", by, now_ms())

    async def take_stop(self, thread_id: str) -> str | None:
        """Consume a pending stop request (exactly one hook answer carries it); who asked."""
        return await self.db.fetchval(
            "UPDATE thread_control SET stop_requested_at=NULL "
            "WHERE thread_id=$1 AND stop_requested_at IS NOT NULL RETURNING stop_requested_by",
            thread_id,
        )

    async def set_stop_blocks(self, thread_id: str, count: int) -> None:
        await self._set(thread_id, "stop_blocks=$2", count)

    async def set_archived(self, thread_id: str, by: str) -> None:
        await self._set(
            thread_id,
            "archived_by=$2, archived_at=$3, listen_until=NULL, stop_requested_at=NULL",
            by,
            now_ms(),
        )

    async def last_event(self, thread_id: str) -> tuple[str, int] | None:
        """The session's latest hook event (name, received at ms): its last activity."""
        row = await self.db.fetchrow(
            "SELECT event_name, received_at FROM hook_event WHERE thread_id=$1 "
            "ORDER BY id DESC LIMIT 1",
            thread_id,
        )
        return (row["event_name"], row["received_at"]) if row else None
