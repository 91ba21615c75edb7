"""One approval as the operators live it in a real Synapse room, on both stores.

Pings are counted the way a phone gets them: Synapse's ``/notifications`` for the operator (the
events its push rules made notify), and the mentions (``m.mentions``) of every event in the room.
Claude Code's order is the one recorded from the real CLI: PreToolUse (the tool line), then
PermissionRequest (the prompt), then about 6 s later Notification ``permission_prompt`` ("Claude
needs your permission"); after a denial from Matrix it sends nothing about the call.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from claude_bridge.app import Bridge
from tests.e2e.conftest import HookPoster, Stack, hook_payload
from tests.e2e.test_control import (
    ALICE,
    command,
    open_thread,
    permission_request,
    processed,
    settled_edit,
)
from tests.e2e.test_foundation import _until
from tests.matrix_client import MatrixTestClient

pytestmark = pytest.mark.e2e

NAME = "Alice Liddell"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hook-payloads"


async def nick(user: MatrixTestClient, room: str, name: str) -> None:
    """A display name in this room only (``/myroomnick``): nothing else in the session sees it."""
    path = f"/_matrix/client/v3/rooms/{room}/state/m.room.member/{user.user_id}"
    await user.request("PUT", path, body={"membership": "join", "displayname": name})


async def named_thread(stack: Stack, bridge: Bridge, hooks: HookPoster) -> tuple[str, str, str]:
    """``open_thread``, with alice called ``NAME`` in its room."""
    session, room, ghost = await open_thread(stack, bridge, hooks)
    await nick(stack.users["alice"], room, NAME)
    return session, room, ghost


async def pings(user: MatrixTestClient, room: str) -> list[dict[str, Any]]:
    """The messages of ``room`` that notified ``user`` (Synapse's push rules decided; the
    invite into the room notifies too, and is not the bridge's to count)."""
    data = await user.request("GET", "/_matrix/client/v3/notifications", params={"limit": "100"})
    return [
        n
        for n in data["notifications"]
        if n["room_id"] == room and n["event"]["type"] == "m.room.message"
    ]


def replaced(event: dict[str, Any]) -> str | None:
    """The event an edit replaces; None for anything else."""
    relates = event["content"].get("m.relates_to") or {}
    return relates.get("event_id") if relates.get("rel_type") == "m.replace" else None


def mentions(events: list[dict[str, Any]], user_id: str) -> list[str]:
    """Event ids whose (outer) content mentions ``user_id``: what push rules look at."""
    return [
        e["event_id"]
        for e in events
        if user_id in ((e.get("content") or {}).get("m.mentions") or {}).get("user_ids", [])
    ]


async def sent(bridge: Bridge, session: str, event_name: str) -> None:
    """Wait until delivery has dealt with the thread's events named ``event_name``."""

    async def done() -> bool:
        states = await bridge.db.fetch(
            "SELECT state FROM hook_event WHERE thread_id=$1 AND event_name=$2",
            session.lower(),
            event_name,
        )
        return bool(states) and all(r["state"] == "sent" for r in states)

    await _until(done, f"the {event_name} delivered")


async def call(
    stack: Stack, hooks: HookPoster, session: str, room: str, ghost: str
) -> tuple[asyncio.Task[tuple[int, Any]], str, str, str]:
    """A Bash call that asks for permission: (the held hook call, tool line, prompt, command)."""
    command = f"touch approve-me-{uuid.uuid4().hex[:6]}"
    pre = hook_payload(
        "PreToolUse",
        session,
        tool_input={"command": command, "description": "x"},
        tool_use_id=f"toolu_{uuid.uuid4().hex[:8]}",
        permission_mode="default",
    )
    assert (await hooks.post(pre))[0] == 200
    alice = stack.users["alice"]
    line = await alice.wait_for(
        lambda e: e["sender"] == ghost and e["content"].get("body") == f"💻 Bash: {command}",
        room_id=room,
    )
    task = asyncio.create_task(hooks.post(permission_request(session, command)))
    prompt = await alice.wait_for(
        lambda e: (
            e["sender"] == ghost
            and command in e["content"].get("body", "")
            and "m.new_content" not in e["content"]
            and e["event_id"] != line["event_id"]
        ),
        room_id=room,
    )
    return task, line["event_id"], prompt["event_id"], command


async def test_one_approval_pings_once_and_its_decided_prompt_keeps_only_the_outcome(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session, room, ghost = await named_thread(stack, bridge, hooks)
    alice = stack.users["alice"]
    task, _, prompt, command = await call(stack, hooks, session, room, ghost)

    shown = (await alice.get_event(room, prompt))["content"]
    assert shown["msgtype"] == "m.text"
    assert shown["body"] == (
        f"🔐 Claude asks to use 💻 Bash: {command} — x\nReact ✅ allow once · 🔁 allow for this "
        "session · ❌ deny — or reply deny <reason> — @admin:localhost, @alice:localhost"
    )
    assert shown["body"].count(command) == 1  # shown once, no code block repeating it
    # Claude Code's "needs your permission", seconds later: folded into the prompt.
    note = hook_payload("Notification", session)
    assert note["notification_type"] == "permission_prompt"
    assert (await hooks.post(note))[0] == 200
    await sent(bridge, session, "Notification")

    await alice.react(room, prompt, "✅")
    assert (await asyncio.wait_for(task, 30))[1]["hookSpecificOutput"]["decision"] == {
        "behavior": "allow"
    }
    decided = await settled_edit(alice, room, prompt, "Allowed once")
    assert decided == f"✅ Allowed once by {NAME}\n💻 Bash: {command} — x"

    events = await alice.messages(room)
    edit = next(e for e in events if replaced(e) == prompt)
    new = edit["content"]["m.new_content"]
    assert new["msgtype"] == "m.text" and new["m.mentions"] == {}
    assert new["formatted_body"].startswith(
        f'<p><b>✅ Allowed once by <a href="https://matrix.to/#/{ALICE}">{NAME}</a></b></p>'
    )
    assert not [e for e in events if "needs your permission" in str(e["content"])]
    # One ping: the prompt, for each operator; the edit, the folded notification and the tool
    # line notify nobody.
    for user in (alice, stack.users["admin"]):
        assert mentions(events, user.user_id) == [prompt]
        notified = await pings(user, room)
        assert [n["event"]["event_id"] for n in notified] == [prompt], notified
        assert {"set_tweak": "highlight"} in notified[0]["actions"]
    assert [replaced(e) for e in events if replaced(e)] == [prompt]  # the tool line stays


async def test_a_call_denied_from_matrix_says_so_on_its_tool_line(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session, room, ghost = await named_thread(stack, bridge, hooks)
    alice = stack.users["alice"]
    kept, _, kept_prompt, _ = await call(stack, hooks, session, room, ghost)
    task, line, prompt, command = await call(stack, hooks, session, room, ghost)

    await alice.send_text(room, "deny not on a Friday", reply_to=prompt)
    decision = (await asyncio.wait_for(task, 30))[1]["hookSpecificOutput"]["decision"]
    assert decision["behavior"] == "deny"
    assert await settled_edit(alice, room, prompt, "Denied") == (
        f"❌ Denied by {NAME}: not on a Friday\n💻 Bash: {command} — x"
    )
    marked = await alice.wait_for(lambda e: replaced(e) == line, room_id=room)
    assert marked["sender"] == ghost
    assert marked["content"]["m.new_content"]["body"] == (
        f"🚫 Bash: {command} — denied by {NAME}: not on a Friday"
    )
    assert marked["content"]["m.mentions"] == {}
    # Allowed: its line is left for its output.
    await alice.react(room, kept_prompt, "👍")
    assert (await asyncio.wait_for(kept, 30))[1]["hookSpecificOutput"]["decision"] == {
        "behavior": "allow"
    }
    await settled_edit(alice, room, kept_prompt, f"Allowed once by {NAME}")
    events = await alice.messages(room)
    edited = [replaced(e) for e in events if replaced(e)]
    assert sorted(edited) == sorted([line, prompt, kept_prompt])  # not the allowed call's line
    assert len(await pings(alice, room)) == 2  # the two prompts


async def test_other_reactions_are_answered_once_and_the_usual_synonyms_decide(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session, room, ghost = await open_thread(stack, bridge, hooks)
    alice, victor = stack.users["alice"], stack.users["victor"]
    admin = stack.users["admin"]
    task, _, prompt, _ = await call(stack, hooks, session, room, ghost)

    party = await alice.react(room, prompt, "🎉")
    hint = await alice.wait_for(
        lambda e: (
            e["sender"] == ghost
            and e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
            == prompt
        ),
        room_id=room,
    )
    assert hint["content"]["body"].startswith("🎉 does not decide this request. Reactions that")
    assert "❎" in hint["content"]["body"] and "👎" in hint["content"]["body"]
    assert hint["content"]["msgtype"] == "m.notice" and hint["content"]["m.mentions"] == {}
    # Spam is not answered again; nor is a reaction by someone who may not decide.
    more = [await admin.react(room, prompt, key) for key in ("😄", "🚀", "👀")]
    for event_id in [party, *more]:
        await processed(bridge, event_id)
    await command(admin, room, ghost, "!claude invite @victor:localhost viewer")
    await victor.wait_for_invite(room)
    await victor.join(room)
    await processed(bridge, await victor.react(room, prompt, "🤔"))
    assert not task.done()
    # ❎, offered first by some clients, denies.
    await alice.react(room, prompt, "❎")
    decision = (await asyncio.wait_for(task, 30))[1]["hookSpecificOutput"]["decision"]
    assert decision["behavior"] == "deny"
    events = await alice.messages(room)
    hints = [e for e in events if "does not decide" in str(e["content"].get("body", ""))]
    assert len(hints) == 1


async def test_a_needs_your_permission_long_after_the_last_decision_still_pings(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    """Without an open request (its hook not installed, or the bridge away then) Claude Code's
    notification is the only one, and pings."""
    session, room, ghost = await open_thread(stack, bridge, hooks)
    alice = stack.users["alice"]
    task, _, prompt, _ = await call(stack, hooks, session, room, ghost)
    await alice.react(room, prompt, "✅")
    await asyncio.wait_for(task, 30)
    await settled_edit(alice, room, prompt, "Allowed once")
    # Decided two minutes ago, as far as the store knows.
    await bridge.db.execute(
        "UPDATE approval SET decided_at=decided_at-120000 WHERE thread_id=$1", session.lower()
    )
    marker = f"needs your permission ({uuid.uuid4().hex[:6]})"
    assert (await hooks.post(hook_payload("Notification", session, message=marker)))[0] == 200
    note = await alice.wait_for(lambda e: marker in e["content"].get("body", ""), room_id=room)
    assert ALICE in note["content"]["m.mentions"]["user_ids"]
    notified = {n["event"]["event_id"] for n in await pings(alice, room)}
    assert notified == {prompt, note["event_id"]}


async def test_an_edit_prompt_numbers_its_lines_from_what_the_session_read(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    """Recorded from Claude Code 2.1.332: a Read of src/app.py, then an Edit of it. The prompt
    comes before the edit runs, so Claude Code's structuredPatch is not there yet; the edit
    applied to what the Read returned gives the same diff."""
    session, room, ghost = await open_thread(stack, bridge, hooks)
    read, edit = recorded("PostToolUse.Read.json"), recorded("PostToolUse.Edit.json")
    assert (await hooks.post({**read, "session_id": session}))[0] == 200
    request = hook_payload("PermissionRequest", session, tool_name="Edit")
    task = asyncio.create_task(hooks.post({**request, "tool_input": edit["tool_input"]}))
    prompt = await stack.users["alice"].wait_for(
        lambda e: (
            e["sender"] == ghost
            and "Edit: src/app.py" in e["content"].get("body", "")
            and "m.new_content" not in e["content"]
        ),
        room_id=room,
    )
    assert (
        "\n```diff\n--- a/src/app.py\n+++ b/src/app.py\n@@ -59,4 +59,4 @@\n line 59\n line 60\n"
        " def limit(items):\n-    return items[:10]\n+    return items[:n]\n```\nReact"
    ) in prompt["content"]["body"]
    await stack.users["alice"].react(room, prompt["event_id"], "✅")
    await asyncio.wait_for(task, 30)
    decided = await settled_edit(stack.users["alice"], room, prompt["event_id"], "Allowed")
    assert decided.startswith("✅ Allowed once by alice\n✏️ Edit: src/app.py\n```diff\n")
    assert "\n@@ -59,4 +59,4 @@\n" in decided


def recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data
