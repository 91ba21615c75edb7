"""Steering a live session from Matrix, end to end on real Synapse (SQLite and Postgres).

Each level of user is a real syncing Matrix client: alice (operator), admin (admin), victor
(viewer) and mallory (no level). Claude Code's side is the hook poster, which sees exactly what
Claude Code would: the hook answers.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from claude_bridge.app import Bridge
from tests.e2e.conftest import HOOK_TOKEN, HookPoster, Stack, hook_payload, new_session
from tests.e2e.test_foundation import _until, _wait_for_room
from tests.matrix_client import MatrixRequestError, MatrixTestClient
from tests.stuck_client import request_without_reading, what_arrives

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ALICE, ADMIN = "@alice:localhost", "@admin:localhost"


async def open_thread(stack: Stack, bridge: Bridge, hooks: HookPoster) -> tuple[str, str, str]:
    """A fresh session whose room alice and admin have joined: (session, room, ghost)."""
    session = new_session()
    assert (await hooks.post(hook_payload("SessionStart", session)))[0] == 200
    room = await _wait_for_room(bridge, session.lower())
    for name in ("alice", "admin"):
        await stack.users[name].wait_for_invite(room)
        await stack.users[name].join(room)
    return session, room, f"@claude-{session.lower()}:localhost"


def post_tool_use(session: str, command: str = "echo hi", **fields: Any) -> dict[str, Any]:
    return hook_payload(
        "PostToolUse", session, tool_input={"command": command, "description": "x"}, **fields
    )


def permission_request(session: str, command: str) -> dict[str, Any]:
    return hook_payload(
        "PermissionRequest", session, tool_input={"command": command, "description": "x"}
    )


async def processed(bridge: Bridge, event_id: str) -> None:
    """Wait until the bridge has handled a Matrix event (so "nothing happened" means something)."""

    async def done() -> bool:
        value = await bridge.db.fetchval(
            "SELECT processed_at FROM matrix_event WHERE event_id=$1", event_id
        )
        return value is not None

    await _until(done, f"{event_id} handled by the bridge")


async def queued(bridge: Bridge, thread_id: str, count: int) -> None:
    async def enough() -> bool:
        return len(await bridge.control.parts.inbox.queued(thread_id)) >= count

    await _until(enough, f"{count} message(s) queued")


async def command(user: MatrixTestClient, room: str, ghost: str, text: str) -> str:
    """Send a command and return the body of the ghost's reply to it."""
    event_id = await user.send_text(room, text)
    reply = await user.wait_for(
        lambda e: (
            e["sender"] == ghost
            and e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == event_id
        ),
        room_id=room,
    )
    return str(reply["content"]["body"])


def context_of(answer: Any) -> str:
    return str(answer["hookSpecificOutput"]["additionalContext"])


async def delivered_mark(user: MatrixTestClient, room: str, ghost: str, event_id: str) -> None:
    await user.wait_for(
        lambda e: (
            e["type"] == "m.reaction"
            and e["sender"] == ghost
            and e["content"]["m.relates_to"]
            == {
                "rel_type": "m.annotation",
                "event_id": event_id,
                "key": "✓",
            }
        ),
        room_id=room,
    )


# --- messages -----------------------------------------------------------------------------------


async def test_operator_messages_reach_claude_once_mid_turn_then_at_stop(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session, room, ghost = await open_thread(stack, bridge, hooks)
    alice = stack.users["alice"]
    thread_id = session.lower()

    first = await alice.send_text(room, "please also run the linter")
    await queued(bridge, thread_id, 1)
    # A replayed appservice transaction, and the same event handled again after a "crash"
    # between queueing it and marking it processed, queue nothing more.
    await replay_transaction(stack, bridge, first)
    await bridge.db.execute("UPDATE matrix_event SET processed_at=NULL WHERE event_id=$1", first)
    bridge.inbound.notify()
    await processed(bridge, first)

    status, answer = await hooks.post(post_tool_use(session))
    assert status == 200
    assert answer["hookSpecificOutput"]["hookEventName"] == "PostToolUse"
    assert (
        context_of(answer)
        == "Message from @alice:localhost via Matrix:\n> please also run the linter"
    )
    # Carried once: the next answers don't repeat it.
    assert (await hooks.post(post_tool_use(session)))[1] == {}
    await delivered_mark(alice, room, ghost, first)

    second = await alice.send_text(room, "and then *stop* for today")
    third = await alice.send_text(room, "thanks!")
    await queued(bridge, thread_id, 2)
    status, answer = await hooks.post(hook_payload("Stop", session))
    assert answer == {
        "decision": "block",
        "reason": "Message from @alice:localhost via Matrix:\n> and then *stop* for today\n\n"
        "Message from @alice:localhost via Matrix:\n> thanks!",
    }
    assert (await hooks.post(hook_payload("Stop", session, stop_hook_active=True)))[1] == {}
    for event_id in (second, third):
        await delivered_mark(alice, room, ghost, event_id)

    rows = await bridge.db.fetch(
        "SELECT event_id, state, delivered_via FROM session_message WHERE thread_id=$1 ORDER BY id",
        thread_id,
    )
    assert [tuple(r) for r in rows] == [
        (first, "delivered", "PostToolUse"),
        (second, "delivered", "Stop"),
        (third, "delivered", "Stop"),
    ]
    audit = await bridge.db.fetch(
        "SELECT actor, action FROM audit_log WHERE thread_id=$1 AND action='message'", thread_id
    )
    assert [tuple(r) for r in audit] == [(ALICE, "message")] * 3


async def test_a_message_whose_answer_never_reaches_the_host_is_carried_again(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    """Claude Code's host vanished while its hook waited for an answer (a laptop shut): the
    answer with alice's message goes into a connection that acknowledges nothing. The message
    goes back to the queue, none of that answer arrives later, and the next hook carries it,
    once."""
    session, room, ghost = await open_thread(stack, bridge, hooks)
    alice, thread_id = stack.users["alice"], session.lower()
    bridge.hooks.taken_within = 1.0
    long = "please read this carefully: " + "x" * 8000  # more than the host's receive window
    sent = await alice.send_text(room, long)
    await queued(bridge, thread_id, 1)

    body = json.dumps(post_tool_use(session)).encode()
    host, port = stack.config["hooks"]["listen"].rsplit(":", 1)
    request = (
        f"POST /claude/v1/hooks HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {HOOK_TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    stuck = await asyncio.to_thread(request_without_reading, int(port), request)

    async def given_back() -> bool:
        state = await bridge.db.fetchval(
            "SELECT state FROM session_message WHERE event_id=$1", sent
        )
        return state == "queued" and not await bridge.db.fetchval(
            "SELECT COUNT(*) FROM session_message WHERE event_id=$1 AND delivered_via IS NOT NULL",
            sent,
        )

    await _until(
        lambda: bridge.db.fetchval(
            "SELECT COUNT(*) FROM session_message WHERE event_id=$1 AND state='delivered'", sent
        ),
        "the message claimed by the stuck answer",
    )
    await _until(given_back, "the message back in the queue")
    assert long.encode() not in await asyncio.to_thread(what_arrives, stuck)

    status, answer = await hooks.post(post_tool_use(session))
    assert status == 200 and long in context_of(answer)
    assert (await hooks.post(post_tool_use(session)))[1] == {}  # once
    await delivered_mark(alice, room, ghost, sent)


async def replay_transaction(stack: Stack, bridge: Bridge, event_id: str) -> None:
    row = await bridge.db.fetchrow(
        "SELECT txn_id, event FROM matrix_event WHERE event_id=$1", event_id
    )
    base = stack.config["appservice"]["address"]
    auth = {"Authorization": f"Bearer {stack.config['appservice']['hs_token']}"}
    body = json.dumps({"events": [json.loads(row["event"])]})
    async with aiohttp.ClientSession() as http:
        for txn in (row["txn_id"], f"replay-{uuid.uuid4().hex}"):
            url = f"{base}/_matrix/app/v1/transactions/{txn}"
            async with http.put(url, data=body, headers=auth) as resp:
                assert resp.status == 200


async def test_viewers_and_strangers_never_reach_claude(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session, room, ghost = await open_thread(stack, bridge, hooks)
    admin, victor, mallory = stack.users["admin"], stack.users["victor"], stack.users["mallory"]
    reply = await command(admin, room, ghost, "!claude invite @victor:localhost viewer")
    assert "Invited @victor:localhost as viewer" in reply
    await victor.wait_for_invite(room)
    await victor.join(room)
    # Only the bridge invites (the room rules): not even an admin brings a stranger in through
    # Matrix. A stranger who got into a room from before the rules is banned at once
    # (tests/e2e/security/test_room_membership.py).
    with pytest.raises(MatrixRequestError) as refused_invite:
        await admin.request(
            "POST",
            f"/_matrix/client/v3/rooms/{room}/invite",
            body={"user_id": mallory.user_id},
        )
    assert refused_invite.value.status == 403

    sent = [await victor.send_text(room, "viewer says: delete everything")]
    for event_id in sent:
        await processed(bridge, event_id)
    assert (await hooks.post(post_tool_use(session)))[1] == {}
    assert (await hooks.post(hook_payload("Stop", session)))[1] == {}
    assert await bridge.db.fetchval("SELECT COUNT(*) FROM session_message") == 0
    # The viewer may ask for help (and sees only what a viewer can do); the stranger gets nothing.
    help_text = await command(victor, room, ghost, "!claude help")
    assert "status" in help_text and "stop" not in help_text
    refused = await command(victor, room, ghost, "!claude stop")
    assert "needs operator" in refused
    # An admin can make her an operator of this one room: then she is heard.
    await command(admin, room, ghost, "!claude invite @mallory:localhost operator")
    await mallory.wait_for_invite(room)
    await mallory.join(room)
    await mallory.send_text(room, "now I may")
    await queued(bridge, session.lower(), 1)
    assert "Message from @mallory:localhost via Matrix:\n> now I may" == context_of(
        (await hooks.post(post_tool_use(session)))[1]
    )


async def test_a_redacted_message_is_withdrawn_before_delivery(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session, room, _ = await open_thread(stack, bridge, hooks)
    alice = stack.users["alice"]
    oops = await alice.send_text(room, "rm -rf the build dir")
    keep = await alice.send_text(room, "actually, just clean it")
    await queued(bridge, session.lower(), 2)
    redaction = await alice.redact(room, oops)
    await processed(bridge, redaction)

    answer = (await hooks.post(post_tool_use(session)))[1]
    assert (
        context_of(answer) == "Message from @alice:localhost via Matrix:\n> actually, just clean it"
    )
    states = await bridge.db.fetch("SELECT event_id, state FROM session_message ORDER BY id")
    assert [tuple(r) for r in states] == [(oops, "withdrawn"), (keep, "delivered")]


# --- approvals ----------------------------------------------------------------------------------


async def held_request(
    stack: Stack,
    bridge: Bridge,
    hooks: HookPoster,
    session: str,
    room: str,
    ghost: str,
    *,
    held: bool = True,
) -> tuple[asyncio.Task[tuple[int, Any]], str, str]:
    """Post a PermissionRequest; return (the pending hook call, the prompt's event id, command).
    ``held``: check that the call is still held once the prompt is in the room (not with a
    short approval timeout, which may end it first on a loaded machine)."""
    command = f"echo approve-me-{uuid.uuid4().hex[:6]}"
    task = asyncio.create_task(hooks.post(permission_request(session, command)))
    prompt = await stack.users["alice"].wait_for(
        lambda e: (
            e["sender"] == ghost
            and command in e["content"]["body"]
            and "m.new_content" not in e["content"]
        ),
        room_id=room,
    )
    assert "@alice:localhost" in prompt["content"]["m.mentions"]["user_ids"]
    assert not held or not task.done()  # held open while nobody decided
    return task, prompt["event_id"], command


async def settled_edit(user: MatrixTestClient, room: str, prompt: str, text: str) -> str:
    edit = await user.wait_for(
        lambda e: (
            e["content"]["m.relates_to"]["rel_type"] == "m.replace"
            and e["content"]["m.relates_to"]["event_id"] == prompt
            and text in e["content"]["m.new_content"]["body"]
        ),
        room_id=room,
    )
    return str(edit["content"]["m.new_content"]["body"])


async def test_approval_by_reaction_and_by_reply(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session, room, ghost = await open_thread(stack, bridge, hooks)
    alice, admin, victor = stack.users["alice"], stack.users["admin"], stack.users["victor"]
    await command(admin, room, ghost, "!claude invite @victor:localhost viewer")
    await victor.wait_for_invite(room)
    await victor.join(room)

    # ✅ by an operator allows once; a viewer's ✅ before it changes nothing.
    task, prompt, cmd = await held_request(stack, bridge, hooks, session, room, ghost)
    await processed(bridge, await victor.react(room, prompt, "✅"))
    assert not task.done()
    await alice.react(room, prompt, "✅")
    status, answer = await asyncio.wait_for(task, 30)
    assert (status, answer) == (
        200,
        {
            "hookSpecificOutput": {
                "hookEventName": "PermissionRequest",
                "decision": {"behavior": "allow"},
            }
        },
    )
    # The decider by name (their display name, here the localpart Synapse gave), not user id.
    body = await settled_edit(alice, room, prompt, "Allowed once by alice\n")
    assert cmd in body  # the request stays readable under the outcome

    # 🔁 allows for the session with Claude Code's own suggestion.
    task, prompt, _ = await held_request(stack, bridge, hooks, session, room, ghost)
    await admin.react(room, prompt, "🔁")
    decision = (await asyncio.wait_for(task, 30))[1]["hookSpecificOutput"]["decision"]
    suggestions = hook_payload("PermissionRequest", session)["permission_suggestions"]
    assert decision == {"behavior": "allow", "updatedPermissions": suggestions}
    await settled_edit(alice, room, prompt, "Allowed for this session by admin\n")

    # ❌ denies; a reply "deny <reason>" denies with the reason for Claude.
    task, prompt, _ = await held_request(stack, bridge, hooks, session, room, ghost)
    await alice.react(room, prompt, "❌")
    decision = (await asyncio.wait_for(task, 30))[1]["hookSpecificOutput"]["decision"]
    assert decision == {"behavior": "deny", "message": "Denied by @alice:localhost via Matrix"}
    task, prompt, _ = await held_request(stack, bridge, hooks, session, room, ghost)
    await alice.send_text(room, "deny use a dry run first", reply_to=prompt)
    decision = (await asyncio.wait_for(task, 30))[1]["hookSpecificOutput"]["decision"]
    assert decision == {
        "behavior": "deny",
        "message": "Denied by @alice:localhost via Matrix. Their reason:\n> use a dry run first",
    }
    await settled_edit(alice, room, prompt, "Denied by alice: use a dry run first\n")
    rows = await bridge.db.fetch(
        "SELECT state, decided_by FROM approval WHERE thread_id=$1 ORDER BY hook_event_id",
        session.lower(),
    )
    assert [tuple(r) for r in rows] == [
        ("allowed", ALICE),
        ("allowed_always", ADMIN),
        ("denied", ALICE),
        ("denied", ALICE),
    ]


async def test_racing_operators_make_one_decision(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session, room, ghost = await open_thread(stack, bridge, hooks)
    alice, admin = stack.users["alice"], stack.users["admin"]
    task, prompt, _ = await held_request(stack, bridge, hooks, session, room, ghost)
    first, second = await asyncio.gather(
        alice.react(room, prompt, "❌"), admin.react(room, prompt, "✅")
    )
    answer = (await asyncio.wait_for(task, 30))[1]
    row = await bridge.db.fetchrow("SELECT state, decided_by, decision_event FROM approval")
    winner, loser = (first, second) if row["decision_event"] == first else (second, first)
    expected = {"denied": "deny", "allowed": "allow"}[row["state"]]
    assert answer["hookSpecificOutput"]["decision"]["behavior"] == expected
    assert row["decided_by"] == (ALICE if winner == first else ADMIN)
    # The later decision is answered, not silently dropped.
    late = await alice.wait_for(
        lambda e: e["sender"] == ghost and "Already settled" in e["content"]["body"],
        room_id=room,
    )
    loser_id = ADMIN if loser == second else ALICE
    assert late["content"]["body"].startswith(loser_id)
    await processed(bridge, loser)
    assert await bridge.db.fetchval("SELECT COUNT(*) FROM approval WHERE state<>'pending'") == 1


async def test_approval_timeout_and_terminal_answers_give_no_decision(
    stack: Stack, start_bridge: Any, hooks: HookPoster
) -> None:
    bridge = await start_bridge(bridge={"control": {"approval_timeout": 1.0}})
    session, room, ghost = await open_thread(stack, bridge, hooks)
    alice = stack.users["alice"]
    task, prompt, _ = await held_request(stack, bridge, hooks, session, room, ghost, held=False)
    assert (await asyncio.wait_for(task, 30)) == (200, {})
    await settled_edit(alice, room, prompt, "No decision within 1 s")

    # A later decision is refused politely.
    late = await alice.react(room, prompt, "✅")
    await alice.wait_for(
        lambda e: e["sender"] == ghost and "Already settled" in e["content"]["body"], room_id=room
    )
    await processed(bridge, late)
    assert await bridge.db.fetchval("SELECT state FROM approval") == "timed_out"


async def test_terminal_answering_first_releases_the_hook(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session, room, ghost = await open_thread(stack, bridge, hooks)
    task, prompt, cmd = await held_request(stack, bridge, hooks, session, room, ghost)
    # The user allowed it in the terminal: the tool ran and its PostToolUse arrives.
    assert (await hooks.post(post_tool_use(session, cmd)))[0] == 200
    assert (await asyncio.wait_for(task, 30)) == (200, {})
    await settled_edit(stack.users["alice"], room, prompt, "answered in the terminal")

    # Claude Code giving up on the hook (connection closed) settles it the same way.
    task, prompt, _ = await held_request(stack, bridge, hooks, session, room, ghost)
    task.cancel()
    await settled_edit(stack.users["alice"], room, prompt, "answered in the terminal")


# --- commands -----------------------------------------------------------------------------------


async def test_stop_listen_status_and_unknown_commands(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session, room, ghost = await open_thread(stack, bridge, hooks)
    alice, admin = stack.users["alice"], stack.users["admin"]

    assert "stop" in await command(alice, room, ghost, "!claude help")
    assert "invite" not in await command(alice, room, ghost, "!claude help")
    assert "invite" in await command(admin, room, ghost, "!claude help")
    unknown = await command(alice, room, ghost, "!claude frobnicate")
    assert "Unknown command `frobnicate`" in unknown and "status" in unknown

    await alice.send_text(room, "queued for later")
    await queued(bridge, session.lower(), 1)
    status = await command(alice, room, ghost, "!claude status")
    assert session in status and "1 message(s) waiting" in status and "queued for later" in status

    assert "stop at its next hook" in await command(alice, room, ghost, "!claude stop")
    answer = (await hooks.post(post_tool_use(session)))[1]
    assert answer == {"continue": False, "stopReason": "Stopped from Matrix by @alice:localhost"}
    nxt = (await hooks.post(post_tool_use(session)))[1]
    assert "continue" not in nxt and "queued for later" in context_of(nxt)


async def test_listen_mode_holds_stop_until_a_message(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session, room, ghost = await open_thread(stack, bridge, hooks)
    alice = stack.users["alice"]
    assert "Listening until" in await command(alice, room, ghost, "!claude listen 5")

    stop = asyncio.create_task(hooks.post(hook_payload("Stop", session)))
    await _until(
        lambda: _true(bridge.control.signals.holding(f"thread:{session.lower()}") > 0),
        "the Stop hook held",
    )
    assert not stop.done()
    sent = await alice.send_text(room, "one more thing: update the changelog")
    assert (await asyncio.wait_for(stop, 30)) == (
        200,
        {
            "decision": "block",
            "reason": "Message from @alice:localhost via Matrix:\n"
            "> one more thing: update the changelog",
        },
    )
    await delivered_mark(alice, room, ghost, sent)

    # unlisten releases a held Stop at once.
    stop = asyncio.create_task(hooks.post(hook_payload("Stop", session, stop_hook_active=True)))
    await _until(
        lambda: _true(bridge.control.signals.holding(f"thread:{session.lower()}") > 0),
        "the Stop hook held again",
    )
    await command(alice, room, ghost, "!claude unlisten")
    assert (await asyncio.wait_for(stop, 30)) == (200, {})


async def _true(value: bool) -> bool:
    return value


async def test_the_background_waiter_wakes_an_idle_session(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session, room, ghost = await open_thread(stack, bridge, hooks)
    alice = stack.users["alice"]
    assert (await hooks.post(hook_payload("Stop", session)))[1] == {}  # the turn ended: idle

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "claude_bridge.shim",
        "--url", f"http://{stack.config['hooks']['listen']}", "--timeout", "60", "wait",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"CLAUDE_BRIDGE_TOKEN": HOOK_TOKEN, "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        cwd=REPO,
    )  # fmt: skip
    waiting = asyncio.create_task(
        proc.communicate(json.dumps(hook_payload("Stop", session)).encode())
    )
    await _until(
        lambda: _true(bridge.control.signals.holding(f"thread:{session.lower()}") > 0),
        "the waiter's long-poll",
    )
    sent = await alice.send_text(room, "wake up, the CI is red")
    out, err = await asyncio.wait_for(waiting, 30)
    assert proc.returncode == 2  # asyncRewake: wake the session
    assert out == b""
    assert err.decode() == "Message from @alice:localhost via Matrix:\n> wake up, the CI is red\n"
    await delivered_mark(alice, room, ghost, sent)
    via = await bridge.db.fetchval("SELECT delivered_via FROM session_message")
    assert via == "waiter"


# --- rooms: the bot's chat, knocking, archive ----------------------------------------------------


async def test_bot_chat_lists_threads_and_knocks_are_let_in_by_level(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session, room, _ = await open_thread(stack, bridge, hooks)
    alice, victor, mallory = stack.users["alice"], stack.users["victor"], stack.users["mallory"]
    bot = "@claudebot:localhost"

    dm = await alice.create_room(invite=[bot], is_direct=True)
    welcome = await alice.wait_for(
        lambda e: e["sender"] == bot and e["type"] == "m.room.message", room_id=dm
    )
    assert "help" in welcome["content"]["body"]
    assert f"claude-thread-{session.lower()}" in welcome["content"]["formatted_body"]
    asked = await alice.send_text(dm, "threads")
    listing = await alice.wait_for(
        lambda e: (
            e["sender"] == bot
            and e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == asked
        ),
        room_id=dm,
    )
    assert "https://matrix.to/#/%23claude-thread-" in listing["content"]["formatted_body"]

    # A stranger's invite is declined.
    stranger_dm = await mallory.create_room(invite=[bot], is_direct=True)
    await _until(
        lambda: _invite_declined(mallory, stranger_dm, bot), "the bot to decline mallory's invite"
    )

    # Knocking through the alias: a viewer gets invited, a stranger does not.
    alias = f"#claude-thread-{session.lower()}:localhost"
    knock = await mallory.request(
        "POST", f"/_matrix/client/v3/knock/{alias.replace('#', '%23')}", body={}
    )
    assert knock["room_id"] == room
    await victor.request("POST", f"/_matrix/client/v3/knock/{alias.replace('#', '%23')}", body={})
    await victor.wait_for_invite(room)
    await victor.join(room)
    members = await alice.joined_members(room)
    assert victor.user_id in members and mallory.user_id not in members
    assert room not in await mallory.invited_rooms()  # her knock came first and was ignored
    assert (
        await bridge.db.fetchval(
            "SELECT COUNT(*) FROM audit_log WHERE action='join' AND actor=$1", victor.user_id
        )
        == 1
    )


async def _invite_declined(user: MatrixTestClient, room: str, bot: str) -> bool:
    state = await user.room_state(room)
    return any(
        e["type"] == "m.room.member"
        and e["state_key"] == bot
        and e["content"]["membership"] == "leave"
        for e in state
    )


async def test_archive_mute_and_per_thread_removal(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session, room, ghost = await open_thread(stack, bridge, hooks)
    alice, admin = stack.users["alice"], stack.users["admin"]

    assert "no longer mirrored" in await command(alice, room, ghost, "!claude mute")
    assert session.lower() in bridge.control.parts.muted
    mark = f"muted-{uuid.uuid4().hex[:6]}"
    await hooks.post(hook_payload("PreToolUse", session, tool_input={"command": f"echo {mark}"}))
    await hooks.post(hook_payload("Notification", session, message=f"after {mark}"))
    await alice.wait_for(lambda e: f"after {mark}" in e["content"]["body"], room_id=room)
    assert not [e for e in await alice.messages(room) if f"echo {mark}" in str(e["content"])]
    await command(alice, room, ghost, "!claude unmute")

    # An admin shuts alice out of this one room: her messages stop counting here.
    assert "no access" in await command(admin, room, ghost, "!claude invite @alice:localhost none")
    await admin.wait_for(
        lambda e: (
            e["type"] == "m.room.member"
            and e["state_key"] == ALICE
            and e["content"]["membership"] == "ban"
        ),
        room_id=room,
    )

    reply = await command(admin, room, ghost, "!claude archive")
    assert "Archived by @admin:localhost" in reply
    await admin.wait_for(
        lambda e: (
            e["type"] == "m.room.member"
            and e["state_key"] == ghost
            and e["content"]["membership"] == "leave"
        ),
        room_id=room,
    )
    thread = await bridge.threads.get(session.lower())
    assert thread is not None and thread.status == "archived"
    state = {(e["type"], e["state_key"]): e["content"] for e in await admin.room_state(room)}
    assert state[("org.claude_bridge.thread", "")]["status"] == "ended"
    assert state[("org.claude_bridge.thread", "")]["archived"] is True
    assert state[("m.room.topic", "")]["topic"].startswith("📦 Archived")
    # Later events of the archived session are kept but not mirrored (the ghost is gone).
    assert (await hooks.post(hook_payload("UserPromptSubmit", session, prompt="after")))[0] == 200

    async def set_aside() -> bool:
        rows = await bridge.db.fetch(
            "SELECT state, last_error FROM hook_event WHERE thread_id=$1 AND event_name='UserPromptSubmit'",
            session.lower(),
        )
        return any(r["state"] == "failed" and "archived" in r["last_error"] for r in rows)

    await _until(set_aside, "the post-archive event set aside")


async def test_bridge_shutdown_releases_held_hooks(
    stack: Stack, start_bridge: Any, hooks: HookPoster
) -> None:
    first = await start_bridge()
    session, room, ghost = await open_thread(stack, first, hooks)
    alice = stack.users["alice"]
    task, prompt, _ = await held_request(stack, first, hooks, session, room, ghost)
    # Another session sits in listen mode with its Stop hook held.
    other, other_room, other_ghost = await open_thread(stack, first, hooks)
    await command(alice, other_room, other_ghost, "!claude listen 5")
    stop = asyncio.create_task(hooks.post(hook_payload("Stop", other)))
    await _until(
        lambda: _true(first.control.signals.holding(f"thread:{other.lower()}") > 0),
        "the Stop hook held",
    )

    loop = asyncio.get_running_loop()
    began = loop.time()
    await first.stop()
    # aiohttp would wait 60 s for held handlers; they end at once, each with no decision.
    assert loop.time() - began < 30
    assert await asyncio.wait_for(task, 30) == (200, {})
    assert await asyncio.wait_for(stop, 30) == (200, {})

    second = await start_bridge()
    await settled_edit(alice, room, prompt, "the bridge stopped before a decision")
    assert await second.db.fetchval("SELECT state FROM approval") == "answered_elsewhere"
