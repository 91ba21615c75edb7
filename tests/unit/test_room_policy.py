"""The room rules as power levels (pure): who is listed, what only the bridge may do."""

from __future__ import annotations

from claude_bridge.room_policy import (
    BRIDGE_LEVEL,
    GUARDED_STATE,
    creators_privileged,
    power_levels,
    room_creators,
)

BOT, GHOST = "@claudebot:hs", "@claude-t:hs"
# What Synapse gave a thread room before the room rules (private_chat + users override).
OLD = {
    "users": {BOT: 100, "@alice:hs": 50, "@bob:hs": 50, "@eve:hs": 100},
    "users_default": 0,
    "events": {"m.room.name": 50, "m.room.power_levels": 100, "m.room.tombstone": 150,
               "m.room.encryption": 100, "m.room.avatar": 50, "m.call.invite": 50},
    "events_default": 0,
    "state_default": 50,
    "ban": 50,
    "kick": 50,
    "redact": 50,
    "invite": 0,
    "historical": 100,
    "notifications": {"room": 50},
}  # fmt: skip


def test_people_never_reach_a_level_that_changes_the_room() -> None:
    new = power_levels(OLD, bridge=(BOT, GHOST), operators=["@alice:hs"], creators={GHOST})
    assert new["users"] == {BOT: 100, "@alice:hs": 50}  # bob demoted, eve (unknown) dropped
    for key in ("invite", "kick", "ban", "state_default"):
        assert new[key] == BRIDGE_LEVEL
    assert new["users_default"] == new["events_default"] == 0
    assert set(new["events"]) == set(GUARDED_STATE)
    assert all(level >= BRIDGE_LEVEL for level in new["events"].values())
    assert new["events"]["m.room.tombstone"] == 150  # stricter levels are kept
    assert new["historical"] == 100 and new["notifications"] == {"room": 50}
    # Applying the rules again changes nothing: a conforming room gets no new event.
    again = power_levels(new, bridge=(BOT, GHOST), operators=["@alice:hs"], creators={GHOST})
    assert again == new


def test_creators_are_listed_only_where_the_room_version_needs_it() -> None:
    assert creators_privileged("12") and creators_privileged("org.matrix.hydra.11")
    assert not creators_privileged("10") and not creators_privileged("org.example.custom")
    v10 = power_levels(None, bridge=(BOT, GHOST), operators=[], creators=())
    assert v10["users"] == {BOT: 100, GHOST: 100}
    create = {"sender": GHOST, "content": {"room_version": "12", "additional_creators": [BOT, 5]}}
    assert room_creators(create) == {GHOST, BOT}
    v12 = power_levels(
        None, bridge=(BOT, GHOST), operators=["@a:hs"], creators=room_creators(create)
    )
    assert v12["users"] == {"@a:hs": 50}
