"""Who may be in the room: attacks on membership and room settings, on real Synapse.

Real Matrix users: alice (operator), admin (admin), victor (viewer), mallory (no level), and
fresh users per test (a look-alike of alice, people whose levels change). Rooms "from before"
are rooms put back to the power levels the bridge gave them before the room rules, taken from a
room Synapse made the old way (``rooms.make_old``).

Removal is a ban: ``test_a_kick_would_leave_the_history_readable`` shows why a kick is not enough.
"""

from __future__ import annotations

import uuid

import pytest

from claude_bridge.app import Bridge
from tests.e2e.conftest import HookPoster, Stack, hook_payload
from tests.e2e.security.rooms import (
    BOT,
    WAIT,
    as_bridge,
    content,
    forbidden,
    knock_in,
    make_old,
    membership_of,
    new_user,
    open_room,
    put_state,
    q,
    removed,
    space_of,
    state_of,
)
from tests.e2e.test_control import processed
from tests.e2e.test_foundation import _until
from tests.matrix_client import MatrixRequestError

pytestmark = pytest.mark.e2e

ALICE, ADMIN, VICTOR = "@alice:localhost", "@admin:localhost", "@victor:localhost"
OLD_USERS = {BOT: 100, ALICE: 50, ADMIN: 50}  # what the bridge listed in a thread room before
ONE_STORE = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


def invite_path(room: str) -> str:
    return f"/_matrix/client/v3/rooms/{q(room)}/invite"


# --- new rooms: Synapse itself refuses ------------------------------------------------------------


@ONE_STORE  # power levels live in Synapse; the store plays no part
async def test_only_the_bridge_may_change_a_new_room(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    cwd = f"/home/dev/projects/p-{uuid.uuid4().hex[:6]}"
    session, room, _ghost = await open_room(stack, bridge, hooks, cwd=cwd)
    alice, admin, victor, mallory = (
        stack.users[n] for n in ("alice", "admin", "victor", "mallory")
    )
    await admin.wait_for_invite(room, timeout=WAIT)
    await admin.join(room)
    await knock_in(bridge, victor, session, room)

    levels = await content(alice, room, "m.room.power_levels")
    assert levels["users"] == {BOT: 100, ALICE: 50, ADMIN: 50}  # the ghost created it (v12)
    assert {levels[k] for k in ("invite", "kick", "ban", "state_default")} == {100}
    for kind in ("m.room.join_rules", "m.room.history_visibility", "m.room.power_levels",
                 "m.room.encryption", "m.room.guest_access", "m.room.name", "m.space.parent"):  # fmt: skip
        assert levels["events"][kind] >= 100, kind
    assert (await content(alice, room, "m.room.join_rules"))["join_rule"] == "knock"
    assert (await content(alice, room, "m.room.history_visibility"))[
        "history_visibility"
    ] == "shared"
    assert (await content(alice, room, "m.room.guest_access"))["guest_access"] == "forbidden"

    # A viewer invites a stranger: refused.
    await forbidden(victor.request("POST", invite_path(room), body={"user_id": mallory.user_id}))
    # Neither an operator nor a bridge admin may invite, remove, or change what the room is.
    for person in (alice, admin):
        await forbidden(
            person.request("POST", invite_path(room), body={"user_id": mallory.user_id})
        )
        await forbidden(
            person.request("POST", f"/_matrix/client/v3/rooms/{q(room)}/kick", body={"user_id": VICTOR})
        )  # fmt: skip
        await forbidden(put_state(person, room, "m.room.join_rules", {"join_rule": "public"}))
        await forbidden(put_state(person, room, "m.room.history_visibility", {"history_visibility": "world_readable"}))  # fmt: skip
        await forbidden(
            put_state(person, room, "m.room.guest_access", {"guest_access": "can_join"})
        )
        await forbidden(put_state(person, room, "m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2"}))  # fmt: skip
        raised = {**levels, "users": {**levels["users"], person.user_id: 100}}
        await forbidden(put_state(person, room, "m.room.power_levels", raised))
        await forbidden(put_state(person, room, "org.claude_bridge.thread", {"status": "ended"}))
    members = await state_of(alice, room)
    assert ("m.room.member", mallory.user_id) not in members
    assert (await content(alice, room, "m.room.join_rules"))["join_rule"] == "knock"

    # The project space: the bot alone changes it too.
    space = await space_of(bridge, cwd)
    await alice.wait_for_invite(space, timeout=WAIT)
    await alice.join(space)
    space_levels = await content(alice, space, "m.room.power_levels")
    assert space_levels["users"] == {ALICE: 50, ADMIN: 50}  # the bot created it (v12)
    assert {space_levels[k] for k in ("invite", "kick", "ban", "state_default")} == {100}
    await forbidden(put_state(alice, space, "m.room.join_rules", {"join_rule": "public"}))
    await forbidden(alice.request("POST", invite_path(space), body={"user_id": mallory.user_id}))
    assert (await content(alice, space, "m.room.guest_access"))["guest_access"] == "forbidden"


@ONE_STORE
async def test_a_stranger_knocking_is_left_outside_and_a_look_alike_is_no_one(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session, room, _ghost = await open_room(stack, bridge, hooks)
    alice = stack.users["alice"]
    # Looks like alice to a person reading names: a near id and her name as display name.
    fake = await new_user(stack, "alice", displayname=ALICE)
    alias = f"#claude-thread-{session.lower()}:localhost"
    knock = await fake.request("POST", f"/_matrix/client/v3/knock/{q(alias)}", body={})
    assert knock["room_id"] == room
    event = (await state_of(alice, room))[("m.room.member", fake.user_id)]
    await processed(bridge, event["event_id"])
    # Not let in, and a pending knock shows nothing of the room.
    assert room not in await fake.invited_rooms()
    await forbidden(fake.messages(room))
    await forbidden(fake.join(room))
    # What he writes to the bot does not count either: the bot will not talk to him.
    dm = await fake.create_room(invite=[BOT], is_direct=True)

    async def declined() -> bool:
        return await membership_of(fake, dm, BOT) == "leave"

    await _until(declined, "the bot to decline the look-alike's chat", WAIT)
    await fake.close()


# --- rooms from before the rules: the bridge removes whoever gets in ------------------------------


async def test_a_stranger_invited_by_a_viewer_is_banned_and_reads_nothing(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session, room, ghost = await open_room(stack, bridge, hooks)
    alice, victor = stack.users["alice"], stack.users["victor"]
    await knock_in(bridge, victor, session, room)
    await alice.send_text(room, "the session so far: a secret plan")
    await make_old(stack, room, ghost, OLD_USERS)
    stranger = await new_user(stack, "stranger")
    fake = await new_user(stack, "alice", displayname="alice")

    for guest in (stranger, fake):
        # The old rules let a viewer invite; the bridge removes the guest at once.
        await victor.request("POST", invite_path(room), body={"user_id": guest.user_id})
        event = await removed(alice, room, guest.user_id, by=ghost)
        assert guest.user_id in event["content"]["reason"]
        # Never in the room: no history, no way back in.
        await forbidden(guest.messages(room))
        await forbidden(guest.join(room), "M_BAD_STATE")
        await guest.close()
    audit = await bridge.db.fetch("SELECT actor, detail FROM audit_log WHERE action='ban'")
    assert sorted((r["actor"], r["detail"]) for r in audit) == sorted(
        (ghost, f"{guest.user_id} (invite, by {VICTOR})") for guest in (stranger, fake)
    )


async def test_a_stranger_who_gets_into_an_opened_room_is_banned_and_the_room_closed(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session, room, ghost = await open_room(stack, bridge, hooks)
    alice, mallory = stack.users["alice"], stack.users["mallory"]
    await make_old(stack, room, ghost, OLD_USERS)
    # The room was opened before the bridge checked it (an operator could, under the old rules).
    ghost_user = as_bridge(stack, ghost)
    await put_state(ghost_user, room, "m.room.join_rules", {"join_rule": "public"})
    await mallory.join(room)
    await removed(alice, room, mallory.user_id, by=ghost)
    await forbidden(mallory.join(room), "M_BAD_STATE")
    # After the ban she reads nothing, not even what she could see while she was in.
    await forbidden(mallory.messages(room))
    mark = f"after-the-ban-{uuid.uuid4().hex[:6]}"
    assert (await hooks.post(hook_payload("Notification", session, message=mark)))[0] == 200
    await alice.wait_for(lambda e: mark in str(e.get("content")), room_id=room, timeout=WAIT)
    await forbidden(mallory.messages(room))

    # An operator opens it again under the old rules: the bridge puts the room rules back.
    await put_state(alice, room, "m.room.join_rules", {"join_rule": "public"})

    async def closed() -> bool:
        levels = await content(alice, room, "m.room.power_levels")
        rule = (await content(alice, room, "m.room.join_rules"))["join_rule"]
        return rule == "knock" and levels["state_default"] == 100 and levels["invite"] == 100

    await _until(closed, "the room closed again", WAIT)
    await forbidden(put_state(alice, room, "m.room.join_rules", {"join_rule": "public"}))
    await ghost_user.close()


@ONE_STORE
async def test_a_kick_would_leave_the_history_readable(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    """Why the bridge bans: Synapse shows a ``shared`` room's history to anyone who has left it,
    even someone whose invite was withdrawn before they accepted it."""
    _session, room, ghost = await open_room(stack, bridge, hooks)
    secret = f"secret-{uuid.uuid4().hex[:6]}"
    await stack.users["alice"].send_text(room, secret)
    ghost_user = as_bridge(stack, ghost)
    outcome: dict[str, object] = {}
    for how in ("kick", "ban"):
        guest = await new_user(stack, how)
        await ghost_user.request("POST", invite_path(room), body={"user_id": guest.user_id})
        await ghost_user.request(
            "POST", f"/_matrix/client/v3/rooms/{q(room)}/{how}", body={"user_id": guest.user_id}
        )
        try:
            outcome[how] = secret in str(await guest.messages(room))
        except MatrixRequestError as e:
            outcome[how] = f"refused {e.status}"
        await guest.close()
    assert outcome == {"kick": True, "ban": "refused 403"}
    await ghost_user.close()


# --- encryption -----------------------------------------------------------------------------------


async def test_encryption_turned_on_gets_one_notice_and_nothing_more_reaches_claude(
    stack: Stack, start_bridge, hooks: HookPoster
) -> None:
    bridge = await start_bridge()
    session, room, ghost = await open_room(stack, bridge, hooks)
    alice = stack.users["alice"]
    thread = session.lower()
    # A room whose rules let alice turn encryption on (made before the rules, on other defaults).
    ghost_user = as_bridge(stack, ghost)
    levels = await content(ghost_user, room, "m.room.power_levels")
    await put_state(ghost_user, room, "m.room.power_levels", {**levels, "users": {**levels["users"], ALICE: 100}})  # fmt: skip
    await put_state(alice, room, "m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2"})

    def is_notice(e: dict) -> bool:
        return e["sender"] == ghost and "turned on end-to-end encryption" in str(e["content"])

    notice = await alice.wait_for(is_notice, room_id=room, timeout=WAIT)
    assert (
        ALICE in notice["content"]["body"]
        and "nothing written here reaches Claude" in notice["content"]["body"]
    )

    # The check that followed took alice's power back.
    async def lowered() -> bool:
        return (await content(alice, room, "m.room.power_levels"))["users"].get(ALICE) == 50

    await _until(lowered, "alice back at 50", WAIT)

    # Whatever still arrives readable from the room is not forwarded: messages, commands.
    sent = await alice.send_text(room, "run the deploy")
    asked = await alice.send_text(room, "!claude status")
    await processed(bridge, sent)
    await processed(bridge, asked)
    assert await bridge.control.parts.inbox.queued(thread) == []
    assert not [e for e in await alice.messages(room) if asked in str(e["content"])]  # no reply
    status, answer = await hooks.post(hook_payload("PreToolUse", session))
    assert status == 200 and "additionalContext" not in str(answer)

    # After a restart: still one notice, still nothing forwarded.
    await bridge.stop()
    again = await start_bridge()
    mark = f"after-restart-{uuid.uuid4().hex[:6]}"
    assert (await hooks.post(hook_payload("Notification", session, message=mark)))[0] == 200
    await alice.wait_for(lambda e: mark in str(e.get("content")), room_id=room, timeout=WAIT)
    later = await alice.send_text(room, "and now?")
    await processed(again, later)
    assert await again.control.parts.inbox.queued(thread) == []
    notices = [e for e in await alice.messages(room) if is_notice(e)]
    assert len(notices) == 1
    assert (
        await again.db.fetchval("SELECT encrypted_by FROM room_policy WHERE room_id=$1", room)
        == ALICE
    )
    await ghost_user.close()


# --- per-room levels (!claude invite) -------------------------------------------------------------


async def test_a_per_room_level_is_applied_to_the_room_at_once(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    _session, room, ghost = await open_room(stack, bridge, hooks)
    admin = stack.users["admin"]
    await admin.wait_for_invite(room, timeout=WAIT)
    await admin.join(room)
    guest = await new_user(stack, "guest")

    async def say(text: str) -> str:
        asked = await admin.send_text(room, text)
        reply = await admin.wait_for(
            lambda e: (
                e["sender"] == ghost
                and e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
                == asked
            ),
            room_id=room,
            timeout=WAIT,
        )
        return str(reply["content"]["body"])

    async def listed() -> dict:
        return dict((await content(admin, room, "m.room.power_levels"))["users"])

    assert "as operator" in await say(f"!claude invite {guest.user_id} operator")
    assert (await listed())[guest.user_id] == 50
    await guest.wait_for_invite(room, timeout=WAIT)
    await guest.join(room)
    # Shut out of this room: banned (not kicked, which would leave the history readable).
    assert "no access" in await say(f"!claude invite {guest.user_id} none")
    assert await membership_of(admin, room, guest.user_id) == "ban"
    assert guest.user_id not in await listed()
    await forbidden(guest.messages(room))
    # Let back in as a viewer: the bridge lifts its ban and invites again; viewers are unlisted.
    assert "as viewer" in await say(f"!claude invite {guest.user_id} viewer")
    assert await membership_of(admin, room, guest.user_id) == "invite"
    assert guest.user_id not in await listed()
    await guest.join(room)
    await guest.close()
