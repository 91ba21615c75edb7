"""Who may do what in a thread: ``bridge.permissions`` plus the thread's own overrides.

A per-thread override (``!claude invite @bob:example.org operator``) replaces the global level in
that one room, and ``none`` shuts someone out of it; an admin stays an admin everywhere, so nobody
can lock the bridge's admins out of a room. The bridge's own users never have a level.
"""

from __future__ import annotations

from claude_bridge.config import PermissionLevel
from claude_bridge.ids import MatrixNames
from claude_bridge.permissions import Permissions
from claude_bridge.store.thread_members import ThreadMembers

RANK = {None: 0, PermissionLevel.VIEWER: 1, PermissionLevel.OPERATOR: 2, PermissionLevel.ADMIN: 3}
OVERRIDE_LEVELS = ("viewer", "operator", "none")


def effective_level(
    global_level: PermissionLevel | None, override: str | None
) -> PermissionLevel | None:
    """The level in one thread, from the global level and that thread's override (if any)."""
    if override is None or global_level == PermissionLevel.ADMIN:
        return global_level
    if override == "none":
        return None
    return PermissionLevel(override)


def allows(level: PermissionLevel | None, needed: PermissionLevel) -> bool:
    return RANK[level] >= RANK[needed]


class Roles:
    def __init__(
        self,
        permissions: Permissions,
        members: ThreadMembers,
        names: MatrixNames,
    ) -> None:
        self.permissions = permissions
        self.members = members
        self.is_bridge_user = names.is_bridge_user

    def global_level(self, user_id: str) -> PermissionLevel | None:
        if self.is_bridge_user(user_id):
            return None
        return self.permissions.level(user_id)

    async def level(self, user_id: str, thread_id: str | None) -> PermissionLevel | None:
        """The user's level in this thread (``None``: outside any thread, the global level)."""
        base = self.global_level(user_id)
        if thread_id is None or self.is_bridge_user(user_id):
            return base
        return effective_level(base, await self.members.level(thread_id, user_id))
