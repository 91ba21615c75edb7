"""Who may change what in the bridge's rooms: the power levels of thread rooms and spaces.

Only the bridge (its bot and the room's ghost) invites, kicks, bans or sends any state event: join
rules, history visibility, power levels, names, encryption, space links. People with a level
talk; operators and admins sit at 50 (clients show them as moderators, and they may remove a
message, e.g. a leaked secret), viewers at 0. No person reaches a level that changes the room.

In room versions from 12 on, a room's creators have unlimited power and must not be listed in
``users`` (Synapse refuses the event); in older versions the creator is listed like anyone.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

BRIDGE_LEVEL = 100
OPERATOR_LEVEL = 50

# State a person might use to open the room or change what it is; anything not listed falls
# under ``state_default``, which is the bridge's level too.
GUARDED_STATE = (
    "m.room.power_levels",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.encryption",
    "m.room.canonical_alias",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.pinned_events",
    "m.room.server_acl",
    "m.room.tombstone",
    "m.space.child",
    "m.space.parent",
    "org.claude_bridge.thread",
)
THRESHOLDS = {
    "users_default": 0,
    "events_default": 0,
    "state_default": BRIDGE_LEVEL,
    "invite": BRIDGE_LEVEL,
    "kick": BRIDGE_LEVEL,
    "ban": BRIDGE_LEVEL,
    "redact": OPERATOR_LEVEL,
}

THREAD_JOIN_RULE = "knock"  # joining through #claude-thread-…: control lets in who has a level
SPACE_JOIN_RULE = "invite"
HISTORY = "shared"  # people given a level later (``!claude invite``) read the whole session
GUEST_ACCESS = "forbidden"


def creators_privileged(room_version: str) -> bool:
    """Whether the room version gives its creators unlimited power (MSC4289, version 12 on)."""
    if room_version.startswith("org.matrix.hydra."):
        return True
    return room_version.isdigit() and int(room_version) >= 12


def room_creators(create_event: Mapping[str, Any]) -> set[str]:
    """The sender of ``m.room.create`` and its ``additional_creators``."""
    content = create_event.get("content") or {}
    extra = content.get("additional_creators") or []
    return {str(create_event.get("sender"))} | {u for u in extra if isinstance(u, str)}


def power_levels(
    current: Mapping[str, Any] | None,
    *,
    bridge: Iterable[str],
    operators: Iterable[str],
    creators: Collection[str] = (),
) -> dict[str, Any]:
    """The power levels the room should have: ``current`` with the bridge's rules applied.

    ``bridge`` are the bot and ghost(s) that run the room, ``operators`` the people at 50 and
    ``creators`` those the room version already makes all-powerful (left out of ``users``).
    Everyone else listed in ``current`` loses their entry. Keys the rules do not cover (e.g.
    ``notifications``) are kept.
    """
    content = dict(current or {})
    content.update(THRESHOLDS)
    old_events = content.get("events")
    old_events = old_events if isinstance(old_events, dict) else {}
    content["events"] = {
        kind: max(_int(old_events.get(kind)), BRIDGE_LEVEL) for kind in GUARDED_STATE
    }
    users = {u: OPERATOR_LEVEL for u in operators}
    users.update({u: BRIDGE_LEVEL for u in bridge})
    content["users"] = {u: level for u, level in sorted(users.items()) if u not in creators}
    return content


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def initial_state(join_rule: str) -> list[dict[str, Any]]:
    """The state a new thread room or space starts with, besides its power levels."""
    return [
        {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": join_rule}},
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": HISTORY}},
        {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": GUEST_ACCESS}},
    ]  # fmt: skip
