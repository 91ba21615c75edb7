"""The ``approval`` table: one row per tool call Claude Code asked permission for.

``pending`` until exactly one transition wins (a conditional UPDATE): ``allowed``,
``allowed_always``, ``denied`` (an operator decided), ``timed_out`` or ``answered_elsewhere``
(the terminal, a restart or the session moving on). ``shown_at`` records that the request
message in the room was edited to show the outcome.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mautrix.util.async_db import Database

from claude_bridge.store.database import now_ms

PENDING = "pending"
DECIDED = frozenset({"allowed", "allowed_always", "denied"})

_COLUMNS = (
    "hook_event_id, thread_id, agent_id, call_key, tool_name, request, state, created_at, "
    "expires_at, decided_by, decided_at, decision_event, reason"
)


@dataclass(frozen=True)
class Approval:
    hook_event_id: int
    thread_id: str
    agent_id: str
    call_key: str
    tool_name: str
    request: dict[str, Any]
    state: str
    created_at: int
    expires_at: int
    decided_by: str | None = None
    decided_at: int | None = None
    decision_event: str | None = None
    reason: str | None = None

    @classmethod
    def _from_row(cls, r: Any) -> Approval:
        values = {c.strip(): r[c.strip()] for c in _COLUMNS.split(",")}
        values["request"] = json.loads(values["request"])
        return cls(**values)


class ApprovalStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def count_by_state(self) -> dict[str, int]:
        """Rows by state, for the metrics; none before the table exists (an older schema)."""
        if not await self.db.table_exists("approval"):
            return {}
        rows = await self.db.fetch("SELECT state, COUNT(*) AS n FROM approval GROUP BY state")
        return {r["state"]: int(r["n"]) for r in rows}

    async def create(
        self,
        hook_event_id: int,
        thread_id: str,
        *,
        agent_id: str,
        call_key: str,
        tool_name: str,
        request: dict[str, Any],
        expires_at: int,
    ) -> Approval:
        await self.db.execute(
            "INSERT INTO approval (hook_event_id, thread_id, agent_id, call_key, tool_name, "
            "request, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
            "ON CONFLICT DO NOTHING",
            hook_event_id,
            thread_id,
            agent_id,
            call_key,
            tool_name,
            json.dumps(request, ensure_ascii=False),
            now_ms(),
            expires_at,
        )
        found = await self.get(hook_event_id)
        assert found is not None
        return found

    async def get(self, hook_event_id: int) -> Approval | None:
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM approval WHERE hook_event_id=$1", hook_event_id
        )
        return Approval._from_row(row) if row else None

    async def for_matrix_event(self, event_id: str) -> Approval | None:
        """The approval whose request message (any part of it) is Matrix event ``event_id``."""
        row = await self.db.fetchrow(
            f"SELECT {', '.join('a.' + c.strip() for c in _COLUMNS.split(','))} FROM sent_event s "
            "JOIN approval a ON a.hook_event_id = s.hook_event_id WHERE s.event_id=$1 LIMIT 1",
            event_id,
        )
        return Approval._from_row(row) if row else None

    async def decide(
        self,
        hook_event_id: int,
        state: str,
        *,
        by: str | None = None,
        reason: str | None = None,
        decision_event: str | None = None,
    ) -> bool:
        """Move a pending approval to ``state``; False if something else already did (it won)."""
        won = await self.db.fetchval(
            "UPDATE approval SET state=$2, decided_by=$3, decided_at=$4, reason=$5, "
            "decision_event=$6 WHERE hook_event_id=$1 AND state='pending' RETURNING 1",
            hook_event_id,
            state,
            by,
            now_ms(),
            reason,
            decision_event,
        )
        return bool(won)

    async def settle_moved_on(
        self,
        thread_id: str,
        before_id: int,
        reason: str,
        *,
        agent_id: str | None = None,
        call_key: str | None = None,
    ) -> list[int]:
        """Mark pending approvals of a session that went on without us ``answered_elsewhere``.

        ``agent_id``/``call_key`` narrow it to one (sub)agent or one tool call.
        """
        args: list[Any] = [thread_id, before_id, now_ms(), reason]
        narrow = ""
        for column, value in (("agent_id", agent_id), ("call_key", call_key)):
            if value is not None:
                args.append(value)
                narrow += f" AND {column}=${len(args)}"
        rows = await self.db.fetch(
            "UPDATE approval SET state='answered_elsewhere', decided_at=$3, reason=$4 "
            f"WHERE thread_id=$1 AND state='pending' AND hook_event_id<$2{narrow} "
            "RETURNING hook_event_id",
            *args,
        )
        return [int(r["hook_event_id"]) for r in rows]

    async def abandon_pending(self, reason: str) -> int:
        """At start-up: nobody holds these hooks any more (the bridge restarted)."""
        rows = await self.db.fetch(
            "UPDATE approval SET state='answered_elsewhere', decided_at=$1, reason=$2 "
            "WHERE state='pending' RETURNING hook_event_id",
            now_ms(),
            reason,
        )
        return len(rows)

    async def pending(self, thread_id: str | None = None) -> list[Approval]:
        where = "state='pending'" + (" AND thread_id=$1" if thread_id else "")
        args = (thread_id,) if thread_id else ()
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM approval WHERE {where} ORDER BY hook_event_id", *args
        )
        return [Approval._from_row(r) for r in rows]

    async def open_since(self, thread_id: str, before_id: int, since_ms: int) -> bool:
        """Whether the thread has a request from before hook event ``before_id`` that was still
        pending at ``since_ms`` (or still is)."""
        found = await self.db.fetchval(
            "SELECT 1 FROM approval WHERE thread_id=$1 AND hook_event_id<$2 "
            "AND (decided_at IS NULL OR decided_at>=$3) LIMIT 1",
            thread_id,
            before_id,
            since_ms,
        )
        return found is not None

    async def request_message(self, hook_event_id: int) -> str | None:
        """The Matrix event that shows the request: the ``perm:<id>`` anchor, else its first part."""
        return await self.db.fetchval(
            "SELECT event_id FROM sent_event WHERE hook_event_id=$1 "
            "ORDER BY CASE WHEN anchor=$2 THEN 0 ELSE 1 END, part LIMIT 1",
            hook_event_id,
            f"perm:{hook_event_id}",
        )

    async def unshown(self, limit: int = 100) -> list[Approval]:
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM approval WHERE state<>'pending' AND shown_at IS NULL "
            "ORDER BY hook_event_id LIMIT $1",
            limit,
        )
        return [Approval._from_row(r) for r in rows]

    async def mark_shown(self, hook_event_id: int) -> None:
        await self.db.execute(
            "UPDATE approval SET shown_at=$2 WHERE hook_event_id=$1", hook_event_id, now_ms()
        )
