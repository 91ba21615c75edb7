"""Whose session is it: which hook token may do what with which thread (``hooks.tokens``).

A thread belongs to the token that opened it (``thread.token_name``, by name). Per path:

=====================================================  =======  ======  =====
                                                       owner    shared  admin
=====================================================  =======  ======  =====
post hook events into the session (``/hooks``)         yes      no      yes
get its answers: operator messages, approvals, wait    yes      no      no
read it through the threads API / MCP                  yes      yes     yes
hand off into it through the threads API / MCP         yes      yes     yes
=====================================================  =======  ======  =====

Anyone else is refused (403) with a message saying why. A thread whose owner is no configured
token (renamed or removed) is refused to all but admin, and the message says how to give it back
(``renamed_from``).
"""

from __future__ import annotations

import hmac

from claude_bridge.config import HooksConfig, HookToken, TokenRole

_READERS = frozenset({TokenRole.SHARED, TokenRole.ADMIN})


class TokenAccess:
    def __init__(self, config: HooksConfig) -> None:
        self.tokens: dict[str, HookToken] = config.hook_tokens()
        self._secrets = [(name, t.secret.encode()) for name, t in self.tokens.items()]
        self.renames: dict[str, str] = {
            old: name for name, t in self.tokens.items() for old in t.renamed_from
        }

    def identify(self, authorization: str) -> str | None:
        """The token name an ``Authorization: Bearer …`` header value carries, or None."""
        if not authorization.startswith("Bearer "):
            return None
        given = authorization.removeprefix("Bearer ").strip().encode()
        found = None
        # Compare against every token, without stopping early, so timing says nothing.
        for name, secret in self._secrets:
            if hmac.compare_digest(given, secret):
                found = name
        return found

    def settings(self, name: str | None) -> HookToken | None:
        return self.tokens.get(name) if name is not None else None

    def role(self, name: str | None) -> TokenRole | None:
        token = self.settings(name)
        return token.role if token else None

    def is_local(self, name: str | None) -> bool:
        token = self.settings(name)
        return token is not None and token.local

    def sees_all(self, name: str | None) -> bool:
        return self.role(name) in _READERS

    def may_post_events(self, name: str | None, owner: str | None) -> bool:
        return _owns(name, owner) or self.role(name) == TokenRole.ADMIN

    def may_read(self, name: str | None, owner: str | None) -> bool:
        return _owns(name, owner) or self.role(name) in _READERS

    may_hand_off = may_read

    def refusal(self, session: str, owner: str | None, what: str) -> str:
        """The 403 message: ``what`` was refused for ``session``, which ``owner`` owns."""
        if owner is None or owner not in self.tokens:
            return (
                f"session {session!r} belongs to hook token {owner!r}, which is not in "
                f"hooks.tokens: if that token was renamed, list {owner!r} under the new name's "
                "renamed_from and restart the bridge"
            )
        return (
            f"session {session!r} belongs to another hook token: this token may not {what} it "
            "(only its own sessions; hooks.tokens.<name>.role shared/admin widens that)"
        )


def _owns(name: str | None, owner: str | None) -> bool:
    return name is not None and name == owner
