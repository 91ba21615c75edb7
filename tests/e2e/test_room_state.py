"""What a thread room shows about its session, on real Synapse (SQLite and Postgres): where the
session stands (topic and thread state, told on changes only, the thread state merged), the room
made with its final state in one createRoom, the ended room that answers, ghosts told apart."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from claude_bridge.app import Bridge
from tests.e2e.conftest import HookPoster, Stack, hook_payload, new_session
from tests.e2e.test_control import processed
from tests.e2e.test_foundation import _until, _wait_for_room
from tests.matrix_client import MatrixTestClient

pytestmark = pytest.mark.e2e

CWD = "/home/dev/projects/demo-app"
THREAD_STATE = "org.claude_bridge.thread"
BOT = "@claudebot:localhost"


async def drained(bridge: Bridge) -> None:
    async def empty() -> bool:
        return (await bridge.outbox.backlog())[0] == 0

    await _until(empty, "the outbox drained")


async def post(hooks: HookPoster, session: str, name: str, **fields: Any) -> Any:
    status, body = await hooks.post(hook_payload(name, session, cwd=CWD, **fields))
    assert status == 200, body
    return body


async def open_session(stack: Stack, bridge: Bridge, hooks: HookPoster) -> tuple[str, str]:
    """A started session whose room alice has joined: (session, room)."""
    session = new_session()
    await post(hooks, session, "SessionStart", source="startup")
    room = await _wait_for_room(bridge, session.lower())
    await drained(bridge)
    alice = stack.users["alice"]
    await alice.wait_for_invite(room)
    await alice.join(room)
    return session, room


def state_of(state: list[dict[str, Any]], kind: str, key: str = "") -> dict[str, Any]:
    return next(e for e in state if e["type"] == kind and e["state_key"] == key)["content"]


def topics(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"]["topic"] for e in events if e["type"] == "m.room.topic"]


async def test_the_room_says_where_the_session_stands(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session, room = await open_session(stack, bridge, hooks)
    alice = stack.users["alice"]
    ghost = f"@claude-{session.lower()}:localhost"
    tag = session[:6]

    # Made in one createRoom with its final state: the topic for a session waiting for its first
    # prompt (SessionStart does not set it again), guests kept out without first being let in,
    # already in its project's space, and ``creator`` for clients that still read it.
    events = await alice.messages(room, limit=100)
    assert topics(events) == [f"💬 Waiting for you · demo-app · session {tag}"]
    topic = next(e for e in events if e["type"] == "m.room.topic")["content"]
    assert topic["m.topic"] == {"m.text": [{"mimetype": "text/plain", "body": topic["topic"]}]}
    guest = [e["content"] for e in events if e["type"] == "m.room.guest_access"]
    assert guest == [{"guest_access": "forbidden"}]
    create = next(e for e in events if e["type"] == "m.room.create")
    assert create["content"]["creator"] == ghost == create["sender"]
    parents = [e for e in events if e["type"] == "m.space.parent"]
    assert len(parents) == 1  # from createRoom: linking the space afterwards sent no second one
    kinds = [e["type"] for e in events]  # oldest first
    assert kinds.index("m.space.parent") < kinds.index("m.room.message")
    state = await alice.room_state(room)
    assert state_of(state, THREAD_STATE) == {
        "session_id": session,
        "project": "demo-app",
        "cwd": CWD,
        "status": "active",
        "activity": "waiting_for_user",
    }
    space = parents[0]["state_key"]
    await alice.wait_for_invite(space)
    await alice.join(space)
    space_create = state_of(await alice.room_state(space), "m.room.create")
    assert space_create["type"] == "m.space" and space_create["creator"] == BOT

    # Something the bridge does not write itself stays (the state is merged, not replaced).
    as_token = stack.config["appservice"]["as_token"]
    async with MatrixTestClient(stack.synapse.url, ghost, as_token, appservice=True) as as_ghost:
        marked = {**state_of(state, THREAD_STATE), "org.example.note": "kept"}
        await as_ghost.request(
            "PUT", f"/_matrix/client/v3/rooms/{room}/state/{THREAD_STATE}/", body=marked
        )

    # A turn: working from the prompt, waiting for approval, working again, waiting for you.
    # The tool events in between change nothing, so they set no state.
    await post(hooks, session, "UserPromptSubmit", prompt="Fix the flaky login test")
    for use in ("t1", "t2"):
        tool = {"tool_name": "Bash", "tool_input": {"command": f"echo {use}"}, "tool_use_id": use}
        await post(hooks, session, "PreToolUse", **tool)
        await post(hooks, session, "PostToolUse", **tool, tool_response={"stdout": "ok"})
    await post(hooks, session, "Notification", notification_type="permission_prompt")
    tool = {"tool_name": "Bash", "tool_input": {"command": "rm -rf build"}, "tool_use_id": "t3"}
    await post(hooks, session, "PostToolUse", **tool, tool_response={"stdout": ""})
    await post(hooks, session, "Stop", last_assistant_message="Fixed.")
    await post(hooks, session, "Notification", notification_type="idle_prompt", message="idle")
    await drained(bridge)
    events = await alice.messages(room, limit=200)
    assert [t.split(" · ")[0] for t in topics(events)] == [
        "💬 Waiting for you",
        "⚙️ Working",
        "🔐 Waiting for approval",
        "⚙️ Working",
        "💬 Waiting for you",
    ]
    names = [e["content"]["name"] for e in events if e["type"] == "m.room.name"]
    assert names == [f"Session {tag} · demo-app", "Fix the flaky login test · demo-app"]

    # The end, then a resume: the state keeps what it knew, and the topic says how to go on.
    await post(hooks, session, "SessionEnd", reason="prompt_input_exit")
    await drained(bridge)
    state = await alice.room_state(room)
    ended = state_of(state, THREAD_STATE)
    assert ended == {**marked, "status": "ended", "activity": "ended"}
    assert state_of(state, "m.room.topic")["topic"] == (
        f"⏹️ Ended · go on with: claude --resume {session} (in {CWD})"
    )
    thread = await bridge.threads.get(session.lower())
    assert thread is not None and (thread.status, thread.activity) == ("ended", "ended")
    await post(hooks, session, "SessionStart", source="resume")
    await drained(bridge)
    resumed = state_of(await alice.room_state(room), THREAD_STATE)
    assert resumed == {**marked, "status": "active", "activity": "waiting_for_user"}


async def test_a_message_into_an_ended_session_is_answered_at_once(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session, room = await open_session(stack, bridge, hooks)
    alice = stack.users["alice"]
    ghost = f"@claude-{session.lower()}:localhost"
    live, _ = await open_session(stack, bridge, hooks)  # another session, still running
    await post(hooks, session, "SessionEnd", reason="prompt_input_exit")
    # Told at once, even before delivery has shown the end in the room.
    sent = await alice.send_text(room, "please also run the whole auth suite")
    reply = await alice.wait_for(
        lambda e: (
            e["sender"] == ghost
            and e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
            == sent
        ),
        room_id=room,
    )
    body = reply["content"]["body"]
    assert "has ended" in body and f"`claude --resume {session}`" in body and CWD in body
    assert reply["content"]["msgtype"] == "m.notice"

    # The bot's overview counts it apart from what live sessions have queued.
    dm = await alice.create_room(invite=[BOT], is_direct=True)
    welcome = await alice.wait_for(
        lambda e: e["sender"] == BOT and e["type"] == "m.room.message", room_id=dm
    )
    overview = welcome["content"]["body"]
    assert "1 live session(s), 0 message(s) queued" in overview, overview
    assert "1 message(s) wait for an ended session to be resumed" in overview
    assert live.lower() in welcome["content"]["formatted_body"]
    assert session.lower() not in welcome["content"]["formatted_body"]

    # Nothing is lost: the session resumed gets it with its first answer that carries messages.
    await post(hooks, session, "SessionStart", source="resume")
    answer = await post(
        hooks,
        session,
        "PostToolUse",
        tool_name="Bash",
        tool_input={"command": "ls"},
        tool_use_id="t1",
        tool_response={"stdout": ""},
    )
    context = answer["hookSpecificOutput"]["additionalContext"]
    assert "please also run the whole auth suite" in context
    # A live session's room is not answered so.
    other = await alice.send_text(live_room := await _wait_for_room(bridge, live.lower()), "hi")
    await processed(bridge, other)
    live_ghost = f"@claude-{live.lower()}:localhost"
    replies = [
        e
        for e in await alice.messages(live_room, limit=50)
        if e["sender"] == live_ghost and "has ended" in e["content"].get("body", "")
    ]
    assert replies == []


async def test_ghosts_of_one_project_are_told_apart(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    first, _ = await open_session(stack, bridge, hooks)
    second, _ = await open_session(stack, bridge, hooks)
    alice = stack.users["alice"]
    profiles = [
        await alice.request("GET", f"/_matrix/client/v3/profile/@claude-{s.lower()}:localhost")
        for s in (first, second)
    ]
    names = [p["displayname"] for p in profiles]
    assert names == [f"Claude · demo-app · {first[:6]}", f"Claude · demo-app · {second[:6]}"]
    avatars = [p["avatar_url"] for p in profiles]
    assert all(a.startswith("mxc://") for a in avatars) and avatars[0] != avatars[1]
    media = avatars[0].removeprefix("mxc://")
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{stack.synapse.url}/_matrix/client/v1/media/download/{media}",
            headers={"Authorization": f"Bearer {alice.access_token}"},
        ) as resp,
    ):
        assert resp.status == 200 and resp.content_type == "image/png"
        assert (await resp.read()).startswith(b"\x89PNG\r\n\x1a\n")

    # Uploaded once per ghost: set up again (as after a restart), it keeps the avatar it has.
    thread = await bridge.threads.get(first.lower())
    assert thread is not None
    bridge.router._ready_ghosts.clear()
    await bridge.router.ensure_ghost(thread.ghost_mxid, bridge.router.displayname(thread))
    again = await alice.request("GET", f"/_matrix/client/v3/profile/{thread.ghost_mxid}")
    assert again == profiles[0]
