"""Helpers for the room-membership attacks: users, the bridge's own Matrix identities, and rooms
as they were before the room rules (``claude_bridge/room_policy.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import Any

from claude_bridge.app import Bridge
from tests.e2e.conftest import HookPoster, Stack, hook_payload, new_session
from tests.e2e.test_control import processed
from tests.e2e.test_foundation import _until, _wait_for_room
from tests.matrix_client import MatrixRequestError, MatrixTestClient, user_client

BOT = "@claudebot:localhost"
WAIT = 60.0  # generous: a loaded 2-core machine runs Synapse, Postgres and the bridge


def q(value: str) -> str:
    return value.replace("#", "%23").replace("!", "%21").replace(":", "%3A").replace("@", "%40")


async def new_user(stack: Stack, name: str, displayname: str | None = None) -> MatrixTestClient:
    """A fresh real Matrix user (unique per test run), optionally with a display name."""
    user = await user_client(stack.synapse, f"{name}-{uuid.uuid4().hex[:6]}")
    if displayname is not None:
        await user.request(
            "PUT",
            f"/_matrix/client/v3/profile/{q(user.user_id)}/displayname",
            body={"displayname": displayname},
        )
    return user


def as_bridge(stack: Stack, user_id: str) -> MatrixTestClient:
    """Act as one of the bridge's own users (the bot or a ghost) with the appservice token."""
    token = stack.config["appservice"]["as_token"]
    return MatrixTestClient(stack.synapse.url, user_id, token, appservice=True)


async def forbidden(call: Awaitable[Any], errcode: str = "M_FORBIDDEN") -> None:
    """The homeserver refuses ``call`` with 403 and ``errcode`` (M_BAD_STATE: a banned user)."""
    try:
        await call
    except MatrixRequestError as e:
        assert e.status == 403, e
        assert isinstance(e.body, dict) and e.body.get("errcode") == errcode, e.body
        return
    raise AssertionError("the homeserver allowed it")


async def put_state(user: MatrixTestClient, room: str, kind: str, content: dict[str, Any]) -> None:
    await user.request("PUT", f"/_matrix/client/v3/rooms/{q(room)}/state/{q(kind)}/", body=content)


async def state_of(reader: MatrixTestClient, room: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["type"], e["state_key"]): e for e in await reader.room_state(room)}


async def content(reader: MatrixTestClient, room: str, kind: str, key: str = "") -> dict[str, Any]:
    event = (await state_of(reader, room)).get((kind, key))
    return dict(event["content"]) if event else {}


async def membership_of(reader: MatrixTestClient, room: str, user: str) -> str | None:
    event = (await state_of(reader, room)).get(("m.room.member", user))
    return str(event["content"]["membership"]) if event else None


async def removed(reader: MatrixTestClient, room: str, user: str, by: str) -> dict[str, Any]:
    """Wait until ``by`` banned ``user`` from ``room``, saying why; the member event."""

    async def check() -> dict[str, Any] | None:
        event = (await state_of(reader, room)).get(("m.room.member", user))
        if (
            event
            and event["content"].get("membership") == "ban"
            and event["sender"] == by
            and "no level" in event["content"].get("reason", "")
        ):
            return event
        return None

    found: dict[str, Any] = await _until(check, f"{user} banned from {room}", WAIT)
    return found


async def open_room(
    stack: Stack, bridge: Bridge, hooks: HookPoster, cwd: str | None = None
) -> tuple[str, str, str]:
    """A new session's room with alice (operator) joined: (session, room id, ghost)."""
    session = new_session()
    extra = {"cwd": cwd} if cwd else {}
    assert (await hooks.post(hook_payload("SessionStart", session, **extra)))[0] == 200
    room = await _wait_for_room(bridge, session.lower())
    alice = stack.users["alice"]
    await alice.wait_for_invite(room, timeout=WAIT)
    await alice.join(room)
    await handled_join(bridge, alice, room)
    return session, room, f"@claude-{session.lower()}:localhost"


async def handled_join(bridge: Bridge, user: MatrixTestClient, room: str) -> None:
    """Wait until the bridge has handled ``user``'s join (it checks the room then), so a test
    that changes the room next is not undone by that check."""
    joined = (await state_of(user, room))[("m.room.member", user.user_id)]
    await processed(bridge, joined["event_id"])


async def space_of(bridge: Bridge, cwd: str) -> str:
    """The project space of ``cwd``, once the bridge has made it (just after the room)."""

    async def made() -> str | None:
        return await bridge.router.spaces.store.get(cwd)  # type: ignore[union-attr]

    found: str = await _until(made, f"the space of {cwd}", WAIT)
    return found


async def knock_in(bridge: Bridge, user: MatrixTestClient, session: str, room: str) -> None:
    """Knock through the thread's alias; the bridge lets a user with a level in. Returns once
    the bridge has handled the join (it checks the room then)."""
    alias = f"#claude-thread-{session.lower()}:localhost"
    await user.request("POST", f"/_matrix/client/v3/knock/{q(alias)}", body={})
    await user.wait_for_invite(room, timeout=WAIT)
    await user.join(room)
    await handled_join(bridge, user, room)


async def old_room_rules(stack: Stack, creator: str, users: dict[str, int]) -> dict[str, Any]:
    """The power levels a room got before the room rules, made the way the bridge made them
    then (preset ``private_chat`` with only ``users`` overridden) in a scratch room: Synapse's
    own answer, not a copy of it."""
    maker = as_bridge(stack, creator)
    try:
        scratch = await maker.create_room(
            preset="private_chat", extra={"power_level_content_override": {"users": users}}
        )
        return await content(maker, scratch, "m.room.power_levels")
    finally:
        await maker.close()


async def make_old(stack: Stack, room: str, actor: str, users: dict[str, int]) -> dict[str, Any]:
    """Put ``room`` back to how rooms were before the room rules: viewers may invite, operators
    may change any state but the power levels, guests may join. Sent as the bridge's own user,
    which the bridge ignores (an echo), so the room stays that way until a check."""
    old = await old_room_rules(stack, actor, users)
    assert old["invite"] == 0 and old["state_default"] == 50  # what the attacks relied on
    bridge_user = as_bridge(stack, actor)
    try:
        await put_state(bridge_user, room, "m.room.power_levels", old)
        await put_state(bridge_user, room, "m.room.guest_access", {"guest_access": "can_join"})
    finally:
        await bridge_user.close()
    return old
