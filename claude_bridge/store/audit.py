"""The ``audit_log`` table: who did what to which thread, and when, from Matrix.

Forwarded messages, approval decisions, commands and membership changes each leave a row, so
"who told Claude to do that?" has an answer after the fact.
"""

from __future__ import annotations

from dataclasses import dataclass

from mautrix.util.async_db import Database

from claude_bridge.store.database import now_ms


@dataclass(frozen=True)
class AuditEntry:
    at: int
    thread_id: str | None
    actor: str
    action: str
    detail: str | None


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(
        self, thread_id: str | None, actor: str, action: str, detail: str | None = None
    ) -> None:
        await self.db.execute(
            "INSERT INTO audit_log (at, thread_id, actor, action, detail) "
            "VALUES ($1, $2, $3, $4, $5)",
            now_ms(),
            thread_id,
            actor,
            action,
            detail[:2000] if detail else detail,
        )

    async def recent(self, thread_id: str | None = None, limit: int = 20) -> list[AuditEntry]:
        where, args = ("WHERE thread_id=$2", [thread_id]) if thread_id else ("", [])
        rows = await self.db.fetch(
            f"SELECT at, thread_id, actor, action, detail FROM audit_log {where} "
            "ORDER BY id DESC LIMIT $1",
            limit,
            *args,
        )
        return [
            AuditEntry(r["at"], r["thread_id"], r["actor"], r["action"], r["detail"]) for r in rows
        ]
