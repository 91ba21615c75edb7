"""The ``room_policy`` table: how far each room is in line with the bridge's room rules.

``policy`` is a fingerprint of the rules a room was last checked against (the power-level policy
and ``bridge.permissions``): the start-up check skips rooms that match it, so a restart does not
walk every room again, and a changed config walks them all. ``encrypted_at`` marks a room someone
turned encrypted: the bridge cannot read it any more and stops taking anything from it.
"""

from __future__ import annotations

from mautrix.util.async_db import Database

from claude_bridge.store.database import now_ms


class RoomPolicyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def checked(self, room_id: str, policy: str) -> None:
        await self.db.execute(
            "INSERT INTO room_policy (room_id, policy, checked_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (room_id) DO UPDATE SET policy=excluded.policy, "
            "checked_at=excluded.checked_at",
            room_id,
            policy,
            now_ms(),
        )

    async def unchecked_threads(self, policy: str) -> list[str]:
        """Thread rooms not yet checked against ``policy``, or whose per-thread levels
        (``!claude invite``) changed since their check; thread ids, oldest first."""
        rows = await self.db.fetch(
            "SELECT t.id FROM thread t LEFT JOIN room_policy p ON p.room_id = t.room_id "
            "WHERE t.room_id IS NOT NULL AND (p.policy IS NULL OR p.policy <> $1 "
            "OR EXISTS (SELECT 1 FROM thread_member m "
            "WHERE m.thread_id = t.id AND m.set_at >= p.checked_at)) "
            "ORDER BY t.created_at, t.id",
            policy,
        )
        return [r["id"] for r in rows]

    async def unchecked_spaces(self, policy: str) -> list[str]:
        rows = await self.db.fetch(
            "SELECT s.room_id FROM project_space s LEFT JOIN room_policy p "
            "ON p.room_id = s.room_id WHERE p.policy IS NULL OR p.policy <> $1 "
            "ORDER BY s.created_at, s.room_id",
            policy,
        )
        return [r["room_id"] for r in rows]

    async def set_encrypted(self, room_id: str, by: str) -> bool:
        """Mark the room encrypted; False if it already was."""
        done = await self.db.fetchval(
            "SELECT encrypted_at FROM room_policy WHERE room_id=$1", room_id
        )
        if done is not None:
            return False
        await self.db.execute(
            "INSERT INTO room_policy (room_id, encrypted_at, encrypted_by) VALUES ($1, $2, $3) "
            "ON CONFLICT (room_id) DO UPDATE SET encrypted_at=excluded.encrypted_at, "
            "encrypted_by=excluded.encrypted_by",
            room_id,
            now_ms(),
            by,
        )
        return True

    async def encrypted_rooms(self) -> set[str]:
        rows = await self.db.fetch("SELECT room_id FROM room_policy WHERE encrypted_at IS NOT NULL")
        return {r["room_id"] for r in rows}
