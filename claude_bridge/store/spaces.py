"""The ``project_space`` table: a project (its working directory) → its Matrix space."""

from __future__ import annotations

from mautrix.util.async_db import Database

from claude_bridge.store.database import now_ms


class SpaceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, project_key: str) -> str | None:
        return await self.db.fetchval(
            "SELECT room_id FROM project_space WHERE project_key=$1", project_key
        )

    async def is_space(self, room_id: str) -> bool:
        found = await self.db.fetchval("SELECT 1 FROM project_space WHERE room_id=$1", room_id)
        return found is not None

    async def add(self, project_key: str, room_id: str, name: str) -> str:
        """Record the space; if another one won the race, return that one."""
        await self.db.execute(
            "INSERT INTO project_space (project_key, room_id, name, created_at) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            project_key,
            room_id,
            name,
            now_ms(),
        )
        return str(await self.get(project_key))
