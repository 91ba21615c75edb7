"""Who may do what, from ``bridge.permissions``: a user id beats a domain beats ``*``."""

from __future__ import annotations

from collections.abc import Mapping

from claude_bridge.config import PermissionLevel

_RANK = {PermissionLevel.VIEWER: 1, PermissionLevel.OPERATOR: 2, PermissionLevel.ADMIN: 3}


class Permissions:
    def __init__(self, rules: Mapping[str, PermissionLevel]) -> None:
        self._rules = dict(rules)

    def level(self, user_id: str) -> PermissionLevel | None:
        """The level of ``user_id``, or ``None`` for someone the bridge ignores."""
        if user_id in self._rules:
            return self._rules[user_id]
        domain = user_id.partition(":")[2]
        if domain and domain in self._rules:
            return self._rules[domain]
        return self._rules.get("*")

    def at_least(self, user_id: str, level: PermissionLevel) -> bool:
        have = self.level(user_id)
        return have is not None and _RANK[have] >= _RANK[level]

    def invitees(self) -> list[str]:
        """Named users (not domains or '*') who are operators or admins: invited to new rooms."""
        return sorted(
            user
            for user, level in self._rules.items()
            if user.startswith("@") and _RANK[level] >= _RANK[PermissionLevel.OPERATOR]
        )
