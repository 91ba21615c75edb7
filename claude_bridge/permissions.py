"""Who may do what, from ``bridge.permissions``: a user id beats a domain beats ``*``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from claude_bridge.config import PermissionLevel

T = TypeVar("T")
_RANK = {PermissionLevel.VIEWER: 1, PermissionLevel.OPERATOR: 2, PermissionLevel.ADMIN: 3}


def _rule(rules: Mapping[str, T], user_id: str) -> T | None:
    """The rule for ``user_id``: its own, else its domain's, else ``*``'s."""
    if user_id in rules:
        return rules[user_id]
    domain = user_id.partition(":")[2]
    if domain and domain in rules:
        return rules[domain]
    return rules.get("*")


class Permissions:
    def __init__(
        self,
        rules: Mapping[str, PermissionLevel],
        launch: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self._rules = dict(rules)
        self._launch = {who: frozenset(projects) for who, projects in (launch or {}).items()}

    def level(self, user_id: str) -> PermissionLevel | None:
        """The level of ``user_id``, or ``None`` for someone the bridge ignores."""
        return _rule(self._rules, user_id)

    def may_launch(self, user_id: str, project: str | None) -> bool:
        """Whether ``user_id`` may start, resume or end sessions of ``project`` on a host runner:
        an admin, or an operator whom ``bridge.launch`` grants that project (or ``*``)."""
        level = self.level(user_id)
        if level == PermissionLevel.ADMIN:
            return True
        if level is None or _RANK[level] < _RANK[PermissionLevel.OPERATOR] or project is None:
            return False
        granted = _rule(self._launch, user_id) or frozenset()
        return "*" in granted or project in granted

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
