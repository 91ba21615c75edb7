"""Rooms follow the levels in ``bridge.permissions`` across restarts, rooms from before the room
rules are brought in line at start-up, and the bot's own chats keep to people with a level.

On real Synapse, on SQLite and Postgres (how far the start-up check got is in the store).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from claude_bridge.app import Bridge
from tests.e2e.conftest import HookPoster, Stack
from tests.e2e.security.rooms import (
    BOT,
    WAIT,
    as_bridge,
    content,
    forbidden,
    make_old,
    membership_of,
    new_user,
    open_room,
    put_state,
    removed,
    space_of,
)
from tests.e2e.test_foundation import _until

pytestmark = pytest.mark.e2e

ALICE, ADMIN = "@alice:localhost", "@admin:localhost"


def permissions(stack: Stack, **more: str) -> dict[str, Any]:
    return {"permissions": {**stack.config["bridge"]["permissions"], **more}}


async def swept(bridge: Bridge) -> dict[str, int]:
    await _until(lambda: _set(bridge), "the start-up room check", WAIT)
    return bridge.control.room_sweep.counts


async def _set(bridge: Bridge) -> bool:
    return bridge.control.room_sweep.done.is_set()


async def test_a_demoted_user_is_lowered_and_a_removed_one_banned_after_a_restart(
    stack: Stack, start_bridge, hooks: HookPoster
) -> None:
    carol, dave = await new_user(stack, "carol"), await new_user(stack, "dave")
    before = permissions(stack, **{carol.user_id: "operator", dave.user_id: "operator"})
    first = await start_bridge(bridge=before)
    cwd = f"/home/dev/projects/p-{uuid.uuid4().hex[:6]}"
    _session, room, ghost = await open_room(stack, first, hooks, cwd=cwd)
    for user in (carol, dave):
        await user.wait_for_invite(room, timeout=WAIT)
        await user.join(room)
    levels = await content(carol, room, "m.room.power_levels")
    assert levels["users"][carol.user_id] == levels["users"][dave.user_id] == 50
    space = await space_of(first, cwd)
    await first.stop()

    # carol becomes a viewer, dave is no longer in the config at all.
    after = permissions(stack, **{carol.user_id: "viewer"})
    second = await start_bridge(bridge=after)
    counts = await swept(second)
    assert counts["checked"] >= 2 and counts["banned"] >= 2  # the room, and dave's space invite
    await removed(carol, room, dave.user_id, by=ghost)
    levels = await content(carol, room, "m.room.power_levels")
    assert carol.user_id not in levels["users"] and dave.user_id not in levels["users"]
    assert levels["users"] == {BOT: 100, ALICE: 50, ADMIN: 50}
    await forbidden(dave.messages(room))
    bot = as_bridge(stack, BOT)
    await removed(bot, space, dave.user_id, by=BOT)
    space_users = (await content(bot, space, "m.room.power_levels"))["users"]
    assert carol.user_id not in space_users and dave.user_id not in space_users
    await second.stop()

    # The check is recorded: the next start with the same config walks no room again.
    third = await start_bridge(bridge=after)
    assert (await swept(third))["checked"] == 0
    await third.stop()

    # dave is given a level again: the bridge lifts its ban, and lets him back in.
    again = await start_bridge(bridge=before)
    counts = await swept(again)
    assert counts["unbanned"] >= 1

    async def unbanned() -> bool:
        return await membership_of(carol, room, dave.user_id) == "leave"

    await _until(unbanned, "dave's ban lifted", WAIT)
    assert (await content(carol, room, "m.room.power_levels"))["users"][carol.user_id] == 50
    for user in (carol, dave):
        await user.close()
    await bot.close()


async def test_a_room_from_before_is_migrated_at_startup(
    stack: Stack, start_bridge, hooks: HookPoster
) -> None:
    first = await start_bridge()
    cwd = f"/home/dev/projects/p-{uuid.uuid4().hex[:6]}"
    _session, room, ghost = await open_room(stack, first, hooks, cwd=cwd)
    space = await space_of(first, cwd)
    # As a store upgraded from before the room rules: no room has been checked yet.
    await first.db.execute("DELETE FROM room_policy")
    await first.stop()

    # While the bridge is down: both rooms get their old rules back, the thread room is opened
    # (operators could, then) and a stranger walks in.
    old = await make_old(stack, room, ghost, {BOT: 100, ALICE: 50, ADMIN: 50})
    await make_old(stack, space, BOT, {ALICE: 50, ADMIN: 50})
    ghost_user = as_bridge(stack, ghost)
    await put_state(ghost_user, room, "m.room.join_rules", {"join_rule": "public"})
    stranger = await new_user(stack, "walk-in")
    await stranger.join(room)
    alice = stack.users["alice"]
    assert (await content(alice, room, "m.room.power_levels")) == old

    second = await start_bridge()
    counts = await swept(second)
    assert counts["checked"] == 2 and counts["failed"] == 0
    levels = await content(alice, room, "m.room.power_levels")
    assert {levels[k] for k in ("invite", "kick", "ban", "state_default")} == {100}
    assert levels["users"] == {BOT: 100, ALICE: 50, ADMIN: 50}
    assert levels["historical"] == old["historical"] == 100  # what the rules do not cover stays
    assert (await content(alice, room, "m.room.join_rules"))["join_rule"] == "knock"
    assert (await content(alice, room, "m.room.guest_access"))["guest_access"] == "forbidden"
    await removed(alice, room, stranger.user_id, by=ghost)
    await forbidden(stranger.messages(room))
    bot = as_bridge(stack, BOT)
    space_levels = await content(bot, space, "m.room.power_levels")
    assert {space_levels[k] for k in ("invite", "kick", "ban", "state_default")} == {100}
    assert (await content(bot, space, "m.room.guest_access"))["guest_access"] == "forbidden"
    # What the old rules allowed an operator is refused now.
    await forbidden(put_state(alice, room, "m.room.join_rules", {"join_rule": "public"}))
    for user in (ghost_user, stranger, bot):
        await user.close()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_the_bot_leaves_a_chat_a_stranger_enters_or_that_is_encrypted(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    alice, mallory = stack.users["alice"], stack.users["mallory"]
    dm = await alice.create_room(invite=[BOT], is_direct=True)
    await alice.wait_for(lambda e: e["sender"] == BOT and "help" in e["content"].get("body", ""), room_id=dm, timeout=WAIT)  # fmt: skip
    await alice.request("POST", f"/_matrix/client/v3/rooms/{dm.replace('!', '%21')}/invite",
                        body={"user_id": mallory.user_id})  # fmt: skip
    bye = await alice.wait_for(lambda e: e["sender"] == BOT and "Leaving" in e["content"].get("body", ""), room_id=dm, timeout=WAIT)  # fmt: skip
    assert mallory.user_id in bye["content"]["body"]
    await _until(lambda: _left(alice, dm, BOT), "the bot to leave", WAIT)

    encrypted = await alice.create_room(
        invite=[BOT],
        is_direct=True,
        extra={"initial_state": [{"type": "m.room.encryption", "state_key": "",
                                  "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]},
    )  # fmt: skip
    said = await alice.wait_for(
        lambda e: e["sender"] == BOT and e["type"] == "m.room.message",
        room_id=encrypted,
        timeout=WAIT,
    )
    assert "encrypted" in said["content"]["body"]
    await _until(lambda: _left(alice, encrypted, BOT), "the bot to leave", WAIT)

    # A ghost invited anywhere but its own thread's room declines.
    _session, _room, ghost = await open_room(stack, bridge, hooks)
    elsewhere = await alice.create_room(invite=[ghost])
    await _until(lambda: _left(alice, elsewhere, ghost), "the ghost to decline", WAIT)


async def _left(reader: Any, room: str, user: str) -> bool:
    return await membership_of(reader, room, user) == "leave"
