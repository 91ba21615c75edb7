"""The ``thread_member`` table: per-thread overrides of ``bridge.permissions`` set by an admin.

A row gives one user a level in one thread's room (``viewer`` or ``operator``), or ``none`` to
shut out someone the global rules would let in.
"""

from __future__ import annotations

from mautrix.util.async_db import Database

from claude_bridge.store.database import now_ms


class ThreadMembers:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def level(self, thread_id: str, user_id: str) -> str | None:
        """The override for ``user_id`` in this thread, or None when the global rules apply."""
        return await self.db.fetchval(
            "SELECT level FROM thread_member WHERE thread_id=$1 AND user_id=$2", thread_id, user_id
        )

    async def set(self, thread_id: str, user_id: str, level: str, by: str) -> None:
        await self.db.execute(
            "INSERT INTO thread_member (thread_id, user_id, level, set_by, set_at) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (thread_id, user_id) "
            "DO UPDATE SET level=excluded.level, set_by=excluded.set_by, set_at=excluded.set_at",
            thread_id,
            user_id,
            level,
            by,
            now_ms(),
        )

    async def all(self, thread_id: str) -> dict[str, str]:
        rows = await self.db.fetch(
            "SELECT user_id, level FROM thread_member WHERE thread_id=$1 ORDER BY user_id",
            thread_id,
        )
        return {r["user_id"]: r["level"] for r in rows}

    async def of_user(self, user_id: str) -> dict[str, str]:
        """Every override ``user_id`` has: thread id → level."""
        rows = await self.db.fetch(
            "SELECT thread_id, level FROM thread_member WHERE user_id=$1", user_id
        )
        return {r["thread_id"]: r["level"] for r in rows}
