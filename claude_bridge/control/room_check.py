"""Bring a thread room or project space in line with the room rules (``room_policy``).

One pass reads the room's state once, then fixes what differs: power levels (the bridge alone
changes the room; operators at 50, everyone else unlisted), join rules, world-readable history,
guest access; it bans everyone in it (joined or invited) who has no level, and lifts the bridge's
ban of anyone who has one now. It changes nothing in a room that already conforms, so it is safe
to run again at any time.

Removal is a ban, not a kick: Synapse lets anyone who has left a room, even one whose invite was
withdrawn before they accepted it, page back through its ``shared`` history up to that point. A
banned user reads nothing. A knock is left alone: it shows nothing of the room.

It runs for every room at start-up (``RoomSweep``: rooms made before these rules, and rooms whose
levels in ``bridge.permissions`` changed since their last check) and for one room whenever
someone with a level joins it or someone changes its settings (``RoomGuard``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from claude_bridge.config import PermissionLevel
from claude_bridge.control.roles import Roles, allows
from claude_bridge.log import get_logger
from claude_bridge.matrix.client import MatrixClient, MatrixError
from claude_bridge.permissions import Permissions
from claude_bridge.room_policy import (
    GUARDED_STATE,
    GUEST_ACCESS,
    HISTORY,
    SPACE_JOIN_RULE,
    THREAD_JOIN_RULE,
    THRESHOLDS,
    creators_privileged,
    power_levels,
    room_creators,
)
from claude_bridge.store import Thread
from claude_bridge.store.audit import AuditLog
from claude_bridge.store.room_policy import RoomPolicyStore

log = get_logger("rooms")

IN_ROOM = ("join", "invite")
# Histories that show the room to nobody outside it; anything else (world_readable) is reset.
CLOSED_HISTORIES = ("shared", "invited", "joined")

LevelOf = Callable[[str], Awaitable[PermissionLevel | None]]


def ban_reason(user_id: str) -> str:
    return (
        f"{user_id} has no level in this Claude bridge (bridge.permissions or an admin's "
        "!claude invite): only the people it lists may be in its rooms. The ban ends when "
        "they are given a level."
    )


UNBAN_REASON = "given a level in this bridge"


@dataclass
class Outcome:
    """What one pass changed in a room."""

    changed: list[str] = field(default_factory=list)
    banned: list[str] = field(default_factory=list)
    unbanned: list[str] = field(default_factory=list)
    encryption: dict[str, Any] | None = None
    """The room's ``m.room.encryption`` event, if someone turned encryption on."""


class RoomCheck:
    def __init__(
        self,
        client: MatrixClient,
        roles: Roles,
        permissions: Permissions,
        store: RoomPolicyStore,
        rules: dict[str, PermissionLevel],
        audit: AuditLog,
    ) -> None:
        self.client = client
        self.audit = audit
        self.roles = roles
        self.permissions = permissions
        self.store = store
        self.fingerprint = fingerprint(rules)
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def thread_room(self, thread: Thread) -> Outcome:
        assert thread.room_id
        return await self._check(
            thread.room_id,
            thread=thread.id,
            actor=thread.ghost_mxid,
            bridge=(self.client.bot_mxid, thread.ghost_mxid),
            join_rule=THREAD_JOIN_RULE,
            level_of=lambda user: self.roles.level(user, thread.id),
        )

    async def space(self, room_id: str) -> Outcome:
        async def level_of(user: str) -> PermissionLevel | None:
            return self.roles.global_level(user)

        bot = self.client.bot_mxid
        return await self._check(
            room_id,
            thread=None,
            actor=bot,
            bridge=(bot,),
            join_rule=SPACE_JOIN_RULE,
            level_of=level_of,
        )

    async def _check(
        self,
        room_id: str,
        *,
        thread: str | None,
        actor: str,
        bridge: tuple[str, ...],
        join_rule: str,
        level_of: LevelOf,
    ) -> Outcome:
        async with self._locks[room_id]:
            outcome = Outcome()
            state = {
                (e.get("type"), e.get("state_key")): e
                for e in await self.client.room_state(actor, room_id)
            }
            create = state.get(("m.room.create", ""), {})
            version = str((create.get("content") or {}).get("room_version") or "1")
            creators = room_creators(create) if creators_privileged(version) else set()
            members: dict[str, dict[str, Any]] = {
                key: e
                for (kind, key), e in state.items()
                if kind == "m.room.member" and isinstance(key, str)
            }
            current = _content(state, "m.room.power_levels")
            users = current.get("users")
            listed: dict[str, Any] = users if isinstance(users, dict) else {}
            people = {u for u, e in members.items() if _membership(e) in IN_ROOM}
            # Bans the bridge made; a person's ban (in rooms from before the rules) stays.
            bans = {
                u
                for u, e in members.items()
                if _membership(e) == "ban" and self.roles.is_bridge_user(str(e.get("sender")))
            }
            candidates = people | bans | set(listed) | set(self.permissions.invitees())
            levels = {u: await level_of(u) for u in candidates if not self.roles.is_bridge_user(u)}
            operators = [u for u, lv in levels.items() if allows(lv, PermissionLevel.OPERATOR)]
            wanted = power_levels(current, bridge=bridge, operators=operators, creators=creators)
            if wanted != current:
                await self.client.send_state(actor, room_id, "m.room.power_levels", "", wanted)
                outcome.changed.append("power levels")
            fixes = (
                ("m.room.join_rules", "join_rule", join_rule, lambda v: v == join_rule),
                ("m.room.history_visibility", "history_visibility", HISTORY,
                 lambda v: v in CLOSED_HISTORIES),
                ("m.room.guest_access", "guest_access", GUEST_ACCESS,
                 lambda v: v == GUEST_ACCESS),
            )  # fmt: skip
            for kind, key, value, fine in fixes:
                if not fine(_content(state, kind).get(key)):
                    await self.client.send_state(actor, room_id, kind, "", {key: value})
                    outcome.changed.append(kind)
            outcome.encryption = state.get(("m.room.encryption", ""))
            for user in sorted(people):
                if user in levels and levels[user] is None:
                    if await self._tolerant(
                        self.client.ban(actor, room_id, user, ban_reason(user))
                    ):
                        outcome.banned.append(user)
            for user in sorted(bans):
                if levels.get(user) is not None:
                    if await self._tolerant(self.client.unban(actor, room_id, user, UNBAN_REASON)):
                        outcome.unbanned.append(user)
            await self.store.checked(room_id, self.fingerprint)
            for action, users in (("ban", outcome.banned), ("unban", outcome.unbanned)):
                for user in users:
                    await self.audit.record(thread, actor, action, f"{user} (room check)")
            if outcome.changed or outcome.banned or outcome.unbanned:
                log.info(
                    "room brought in line with the room rules",
                    room_id=room_id,
                    changed=outcome.changed,
                    banned=outcome.banned,
                    unbanned=outcome.unbanned,
                )
            return outcome

    @staticmethod
    async def _tolerant(call: Awaitable[None]) -> bool:
        """A membership change that may have been made meanwhile (the live path bans too)."""
        try:
            await call
        except MatrixError as e:
            if e.temporary:
                raise
            log.info("membership change refused", error=str(e))
            return False
        return True


def _membership(event: dict[str, Any]) -> Any:
    return (event.get("content") or {}).get("membership")


def _content(state: dict[tuple[Any, Any], dict[str, Any]], kind: str) -> dict[str, Any]:
    content = state.get((kind, ""), {}).get("content")
    return content if isinstance(content, dict) else {}


def fingerprint(rules: dict[str, PermissionLevel]) -> str:
    """Changes whenever the rules a room is checked against change: the levels in
    ``bridge.permissions`` or the room policy itself."""
    text = json.dumps(
        {
            "permissions": sorted((user, str(level)) for user, level in rules.items()),
            "thresholds": THRESHOLDS,
            "guarded": GUARDED_STATE,
            "rooms": [THREAD_JOIN_RULE, SPACE_JOIN_RULE, HISTORY, GUEST_ACCESS],
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]
