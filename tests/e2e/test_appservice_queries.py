"""Synapse asks the appservice about an alias or a user in its namespace: the answers that say yes.

A thread exists from its session's first hook event; delivery makes its room. A Matrix user who
joins ``#claude-thread-<session>`` before that makes Synapse ask the bridge, which creates the
room then (``ThreadRouter.query_alias``), and a thread's ghost that Synapse does not know yet is
registered when Synapse asks about it (``query_user``). The refusals (unknown threads, foreign
namespaces, a wrong token) are in ``test_foundation.py`` and ``test_bad_input.py``.

Delivery is stopped in these tests, so the thread stays without a room until Synapse asks.
"""

from __future__ import annotations

from typing import Any

import pytest

from claude_bridge.app import Bridge
from tests.e2e.conftest import HookPoster, Stack, hook_payload, joined_rooms, new_session
from tests.e2e.test_foundation import _until
from tests.matrix_client import MatrixRequestError

pytestmark = pytest.mark.e2e


async def roomless_thread(bridge: Bridge, hooks: HookPoster) -> str:
    """A session whose first event is stored while delivery is stopped: a thread, no room."""
    await bridge.delivery.stop()
    session = new_session()
    assert (await hooks.post(hook_payload("SessionStart", session)))[0] == 200
    thread = await bridge.threads.get(session.lower())
    assert thread is not None and thread.room_id is None
    return session


async def test_joining_a_threads_alias_creates_its_room(
    stack: Stack, start_bridge: Any, hooks: HookPoster
) -> None:
    first: Bridge = await start_bridge()
    session = await roomless_thread(first, hooks)
    thread_id = session.lower()
    ghost = f"@claude-{thread_id}:localhost"
    alice = stack.users["alice"]

    room = await alice.join(f"#claude-thread-{thread_id}:localhost")

    thread = await first.threads.get(thread_id)
    assert thread is not None and thread.room_id == room  # the bridge made it, and recorded it
    state = await alice.room_state(room)
    thread_state = next(s for s in state if s["type"] == "org.claude_bridge.thread")
    assert thread_state["content"]["session_id"] == session
    assert await joined_rooms(stack, ghost) == [room]
    await first.stop()

    # The next bridge delivers the waiting SessionStart into that room, not into a new one.
    second: Bridge = await start_bridge()

    async def drained() -> bool:
        return (await second.outbox.backlog())[0] == 0

    await _until(drained, "the SessionStart delivered")
    shown = [e for e in await alice.messages(room) if e["type"] == "m.room.message"]
    assert [e["sender"] for e in shown] == [ghost]
    assert await joined_rooms(stack, ghost) == [room]


async def test_a_threads_ghost_is_registered_when_synapse_asks(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session = await roomless_thread(bridge, hooks)
    ghost = f"@claude-{session.lower()}:localhost"
    alice = stack.users["alice"]
    profile = f"/_matrix/client/v3/profile/{ghost}"
    with pytest.raises(MatrixRequestError) as unknown:
        await alice.request("GET", profile)
    assert unknown.value.status == 404  # no such user yet

    # Inviting a user Synapse does not know makes it ask the appservice that claims the name.
    room = await alice.create_room(name="asking about a ghost", invite=[ghost])

    async def registered() -> bool:
        try:
            found = await alice.request("GET", profile)
        except MatrixRequestError as e:
            if e.status == 404:
                return False
            raise
        # Named as its thread, with the session's tag; its avatar is its own identicon.
        named = found.get("displayname") == f"Claude · demo-app · {session[:6]}"
        return named and str(found.get("avatar_url", "")).startswith("mxc://")

    await _until(registered, "the ghost registered by the user query, with its name and avatar")
    # The invite itself went through (the bridge may have declined it since: not its room).
    members = {s["state_key"] for s in await alice.room_state(room) if s["type"] == "m.room.member"}
    assert ghost in members
