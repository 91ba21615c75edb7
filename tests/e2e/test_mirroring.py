"""A scripted Claude Code session mirrored into its room, read back by a Matrix user."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from claude_bridge.app import Bridge
from tests.e2e.conftest import HookPoster, Stack, hook_payload, new_session
from tests.e2e.test_foundation import _until, _wait_for_room

pytestmark = pytest.mark.e2e


SECRET = "sk-ant-api03-" + "Q" * 40 + "-abcdEFGH"
CWD = "/home/dev/projects/demo-app"


def script(session: str) -> list[dict[str, Any]]:
    def ev(name: str, **fields: Any) -> dict[str, Any]:
        if name == "PostToolUseFailure":  # not in the captured set: same shape as PostToolUse
            base = hook_payload("PostToolUse", session, hook_event_name=name)
            base.pop("tool_response")
            base.pop("duration_ms")
            return {**base, "cwd": CWD, "prompt_id": "p1", **fields}
        return hook_payload(name, session, cwd=CWD, prompt_id="p1", **fields)

    big = "\n".join(f"line {i}: {'x' * 60}" for i in range(2000)) + f"\nexport KEY={SECRET}\n"
    return [
        hook_payload("SessionStart", session, cwd=CWD),
        ev("UserPromptSubmit", prompt=f"fix the parser, my key is {SECRET}"),
        ev(
            "PreToolUse",
            tool_name="Read",
            tool_input={"file_path": f"{CWD}/README.md"},
            tool_use_id="t1",
        ),
        ev(
            "PostToolUse",
            tool_name="Read",
            tool_input={"file_path": f"{CWD}/README.md"},
            tool_use_id="t1",
            tool_response={"type": "text", "file": {"content": "# demo\n"}},
        ),
        ev(
            "PreToolUse",
            tool_name="Edit",
            tool_input={
                "file_path": f"{CWD}/src/app.py",
                "old_string": "a = 1\n",
                "new_string": "a = 2\n",
            },
            tool_use_id="t2",
        ),
        ev(
            "PostToolUse",
            tool_name="Edit",
            tool_input={
                "file_path": f"{CWD}/src/app.py",
                "old_string": "a = 1\n",
                "new_string": "a = 2\n",
            },
            tool_use_id="t2",
            tool_response={"filePath": f"{CWD}/src/app.py"},
        ),
        ev("PreToolUse", tool_name="Bash", tool_input={"command": "npm test"}, tool_use_id="t3"),
        ev(
            "PostToolUseFailure",
            tool_name="Bash",
            tool_input={"command": "npm test"},
            tool_use_id="t3",
            error="Exit code 1\n2 tests failed",
        ),
        ev("PreToolUse", tool_name="Bash", tool_input={"command": "cat big.log"}, tool_use_id="t4"),
        ev(
            "PostToolUse",
            tool_name="Bash",
            tool_input={"command": "cat big.log"},
            tool_use_id="t4",
            tool_response={"stdout": big, "stderr": "", "interrupted": False},
        ),
        ev("SubagentStart", agent_id="a7913635a7accad94", agent_type="general-purpose"),
        ev(
            "SubagentStop",
            agent_id="a7913635a7accad94",
            agent_type="general-purpose",
            last_assistant_message="Subagent says: the parser is fixed.",
        ),
        ev(
            "Stop",
            last_assistant_message="Fixed the parser.\n\n| file | change |\n|---|---|\n| app.py | a = 2 |",
        ),
        hook_payload("SessionEnd", session, cwd=CWD, reason="prompt_input_exit"),
    ]


async def test_scripted_session_timeline(stack: Stack, bridge: Bridge, hooks: HookPoster) -> None:
    session = new_session()
    for payload in script(session):
        status, body = await hooks.post(payload)
        assert status == 200, body
    thread_id = session.lower()
    room_id = await _wait_for_room(bridge, thread_id)

    async def drained() -> bool:
        return (await bridge.outbox.backlog())[0] == 0

    await _until(drained, "the whole session delivered")
    alice = stack.users["alice"]
    await alice.wait_for_invite(room_id)
    await alice.join(room_id)
    events = await alice.messages(room_id, limit=200)
    ghost = f"@claude-{thread_id}:localhost"
    messages = [e for e in events if e["type"] == "m.room.message"]
    by_id = {e["event_id"]: e for e in messages}

    def threaded_under(root_id: str) -> list[dict[str, Any]]:
        return [
            e
            for e in messages
            if e["content"].get("m.relates_to", {}).get("rel_type") == "m.thread"
            and e["content"]["m.relates_to"]["event_id"] == root_id
        ]

    def main_line(text: str) -> dict[str, Any]:
        found = [
            e
            for e in messages
            if text in e["content"].get("body", "")
            and "m.relates_to" not in e["content"]
            and e["sender"] == ghost
        ]
        assert found, f"no timeline line with {text!r}"
        return found[0]

    # One compact line per tool call in the timeline, output threaded under it.
    read_line = main_line("README.md")
    edit_line = main_line("src/app.py")
    bash_line = main_line("npm test")
    big_line = main_line("cat big.log")
    edit_replies = threaded_under(edit_line["event_id"])
    assert any(
        "-a = 1" in e["content"]["body"] and "+a = 2" in e["content"]["body"] for e in edit_replies
    )
    assert threaded_under(read_line["event_id"])
    # The failing Bash: its line is edited to show the failure, the error is in its thread.
    edits = [
        e
        for e in messages
        if e["content"].get("m.relates_to", {}).get("rel_type") == "m.replace"
        and e["content"]["m.relates_to"]["event_id"] == bash_line["event_id"]
    ]
    assert edits and "❌" in edits[-1]["content"]["m.new_content"]["body"]
    assert any(
        "2 tests failed" in e["content"]["body"] for e in threaded_under(bash_line["event_id"])
    )
    # Oversize output: trimmed with a visible marker, the full text uploaded as a file.
    big_replies = threaded_under(big_line["event_id"])
    assert any("truncated" in e["content"]["body"] for e in big_replies)
    files = [e for e in big_replies if e["content"].get("msgtype") == "m.file"]
    assert files and files[0]["content"]["url"].startswith("mxc://")
    for e in messages:
        assert len(json.dumps(e["content"]).encode()) < 64 * 1024
    # The subagent speaks through its own ghost.
    sub = [e for e in messages if "Subagent says" in e["content"].get("body", "")]
    assert sub and sub[0]["sender"].startswith(f"@claude-{thread_id}-agent-")
    # Claude's reply rendered as HTML with a table; the prompt shown as the local user's words.
    reply = next(e for e in messages if "Fixed the parser" in e["content"].get("body", ""))
    # The table as aligned monospace (Element X shows no <table>), in the body as well.
    table = "file   | change\n-------+-------\napp.py | a = 2"
    assert f"<pre><code>{table}</code></pre>" in reply["content"]["formatted_body"]
    assert reply["content"]["body"] == f"Fixed the parser.\n\n{table}"
    prompt = next(e for e in messages if "fix the parser" in e["content"].get("body", ""))
    assert "Prompt" in prompt["content"]["body"]
    # No secret anywhere: timeline, state, and the uploaded file.
    assert SECRET not in json.dumps(events)
    state = await alice.room_state(room_id)
    assert SECRET not in json.dumps(state)
    media = files[0]["content"]["url"].removeprefix("mxc://")
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{stack.synapse.url}/_matrix/client/v1/media/download/{media}",
            headers={"Authorization": f"Bearer {alice.access_token}"},
        ) as resp,
    ):
        assert resp.status == 200
        full = await resp.text()
    assert "line 1999" in full and SECRET not in full and "[redacted]" in full
    # Room named after the first prompt, then the project; the session's end marks the thread.
    names = [s for s in state if s["type"] == "m.room.name"]
    assert names and names[0]["content"]["name"].startswith("fix the parser")
    assert names[0]["content"]["name"].endswith(" · demo-app")
    topic = next(s for s in state if s["type"] == "m.room.topic")["content"]["topic"]
    assert topic.startswith("⏹️ Ended")
    status_state = next(s for s in state if s["type"] == "org.claude_bridge.thread")
    assert status_state["content"]["status"] == "ended"
    assert status_state["content"]["cwd"] == CWD
    thread = await bridge.threads.get(thread_id)
    assert thread is not None and thread.status == "ended" and thread.title
    # Every event the bridge recorded as sent is in the room as read back through Synapse, and
    # every message there is one of them or another ghost's (the subagent's, the file).
    sent = await bridge.db.fetch("SELECT event_id FROM sent_event WHERE thread_id=$1", thread_id)
    recorded = {r["event_id"] for r in sent}
    in_room = {e["event_id"] for e in events}
    assert recorded and recorded <= in_room, recorded - in_room
    assert {i for i, e in by_id.items() if e["sender"] == ghost} <= recorded


async def test_streamed_reply_is_edited_in_place_and_not_repeated(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session = new_session()
    chunks = ["Here ", "is the ", "answer."]
    await hooks.post(hook_payload("SessionStart", session))

    async def drained() -> bool:
        return (await bridge.outbox.backlog())[0] == 0

    for i, delta in enumerate(chunks):
        payload = hook_payload(
            "MessageDisplay",
            session,
            message_id="m1",
            index=i,
            delta=delta,
            final=i == len(chunks) - 1,
        )
        payload["prompt_id"] = "p9"
        assert (await hooks.post(payload))[0] == 200
        if i == 0:  # the first chunk is in the room before the rest arrive: they must edit it
            await _until(drained, "the first chunk delivered")
    stop = hook_payload("Stop", session, last_assistant_message="Here is the answer.")
    stop["prompt_id"] = "p9"
    assert (await hooks.post(stop))[0] == 200
    room_id = await _wait_for_room(bridge, session.lower())

    await _until(drained, "stream delivered")
    admin = stack.users["admin"]
    await admin.wait_for_invite(room_id)
    await admin.join(room_id)
    messages = [e for e in await admin.messages(room_id) if e["type"] == "m.room.message"]
    originals = [
        e
        for e in messages
        if "Here" in e["content"].get("body", "") and "m.relates_to" not in e["content"]
    ]
    assert len(originals) == 1, [e["content"]["body"] for e in messages]
    assert "Here is the answer." not in originals[0]["content"]["body"]  # sent before the rest
    edits = [
        e
        for e in messages
        if e["content"].get("m.relates_to", {}).get("event_id") == originals[0]["event_id"]
    ]
    assert edits, "the later chunks did not edit the first message"
    assert all(e["content"]["m.relates_to"]["rel_type"] == "m.replace" for e in edits)
    assert "Here is the answer." in edits[-1]["content"]["m.new_content"]["body"]


async def test_threads_of_one_project_share_a_space(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    project = f"/home/dev/projects/spaced-{new_session()[:8]}"
    sessions = [new_session(), new_session()]
    rooms = []
    for session in sessions:
        assert (await hooks.post(hook_payload("SessionStart", session, cwd=project)))[0] == 200
        rooms.append(await _wait_for_room(bridge, session.lower()))

    async def space_id() -> str | None:
        return await bridge.db.fetchval(
            "SELECT room_id FROM project_space WHERE project_key=$1", project
        )

    space = await _until(space_id, "the project's space recorded")
    admin = stack.users["admin"]
    await admin.wait_for_invite(space)
    await admin.join(space)
    state = await admin.room_state(space)
    create = next(s for s in state if s["type"] == "m.room.create")
    assert create["content"].get("type") == "m.space"

    async def both_children() -> bool:
        children = {
            s["state_key"]
            for s in await admin.room_state(space)
            if s["type"] == "m.space.child" and s["content"].get("via")
        }
        return set(rooms) <= children

    await _until(both_children, "both thread rooms linked into the space")
    for room in rooms:
        await admin.wait_for_invite(room)
        await admin.join(room)
        parents = [s for s in await admin.room_state(room) if s["type"] == "m.space.parent"]
        assert [p["state_key"] for p in parents] == [space]
