"""Coalescing against a real Synapse: a queued run of tool calls becomes one merged message,
whose lines keep their threads and edits, and which a lost answer never doubles."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from claude_bridge import metrics
from claude_bridge.app import Bridge
from claude_bridge.coalesce import LINES_FIELD, PARTS_FIELD
from claude_bridge.delivery import Delivery
from tests.e2e.conftest import HookPoster, Stack, StartBridge, hook_payload, new_session
from tests.e2e.test_foundation import _until, _wait_for_room

pytestmark = pytest.mark.e2e

CWD = "/home/dev/projects/demo-app"


class Gate:
    """Holds delivery back while events are posted, so they are all queued when it starts (the
    state a burst or an outage leaves behind), then lets it go."""

    def __init__(self) -> None:
        self.held = False
        self.waiting: list[tuple[Delivery, str]] = []
        self.original: Callable[[Delivery, Any], None] = Delivery.notify

    def release(self) -> None:
        self.held = False
        for delivery, thread_id in self.waiting:
            self.original(delivery, thread_id)
        self.waiting.clear()


@pytest.fixture
async def gate(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gate]:
    gate = Gate()

    def notify(delivery: Delivery, thread_id: Any) -> None:
        if gate.held:
            gate.waiting.append((delivery, thread_id))
        else:
            gate.original(delivery, thread_id)

    monkeypatch.setattr(Delivery, "notify", notify)
    yield gate


def tool(session: str, name: str, use_id: str, **fields: Any) -> dict[str, Any]:
    return hook_payload(name, session, cwd=CWD, prompt_id="p1", tool_use_id=use_id, **fields)


def bash(session: str, use_id: str, command: str) -> dict[str, Any]:
    return tool(session, "PreToolUse", use_id, tool_name="Bash", tool_input={"command": command})


def bash_done(session: str, use_id: str, command: str, out: str) -> dict[str, Any]:
    return tool(
        session,
        "PostToolUse",
        use_id,
        tool_name="Bash",
        tool_input={"command": command},
        tool_response={"stdout": out, "stderr": "", "interrupted": False, "isImage": False},
    )


def bash_failed(session: str, use_id: str, command: str, error: str) -> dict[str, Any]:
    payload = tool(
        session,
        "PostToolUse",
        use_id,
        hook_event_name="PostToolUseFailure",
        tool_name="Bash",
        tool_input={"command": command},
        error=error,
    )
    payload.pop("tool_response", None)
    payload.pop("duration_ms", None)
    return payload


def calls_with_output(session: str, calls: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """PreToolUse then PostToolUse of each (tool use id, command, output)."""
    return [
        payload
        for use, cmd, out in calls
        for payload in (bash(session, use, cmd), bash_done(session, use, cmd, out))
    ]


async def open_room(
    bridge: Bridge, stack: Stack, hooks: HookPoster, session: str, prompt: str | None = None
) -> str:
    """A session whose room exists, joined by alice, with nothing left to deliver. With a
    ``prompt`` it has had it, so the tool calls that follow find the session working (a change
    of where the session stands goes out on its own, room_state)."""
    assert (await hooks.post(hook_payload("SessionStart", session, cwd=CWD)))[0] == 200
    if prompt is not None:
        submit = hook_payload("UserPromptSubmit", session, cwd=CWD, prompt=prompt)
        assert (await hooks.post(submit))[0] == 200
    room_id = await _wait_for_room(bridge, session.lower())
    await drained(bridge)
    alice = stack.users["alice"]
    await alice.wait_for_invite(room_id)
    await alice.join(room_id)
    return room_id


async def drained(bridge: Bridge) -> None:
    async def empty() -> bool:
        return (await bridge.outbox.backlog())[0] == 0

    await _until(empty, "the outbox drained")


async def post_all(hooks: HookPoster, payloads: list[dict[str, Any]]) -> None:
    for payload in payloads:
        status, body = await hooks.post(payload)
        assert status == 200, body


def timeline(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        e for e in events if e["type"] == "m.room.message" and "m.relates_to" not in e["content"]
    ]


def related(events: list[dict[str, Any]], rel_type: str, to: str) -> list[dict[str, Any]]:
    return [
        e
        for e in events
        if e["type"] == "m.room.message"
        and e["content"].get("m.relates_to", {}).get("rel_type") == rel_type
        and e["content"]["m.relates_to"]["event_id"] == to
    ]


async def test_a_queued_run_of_tool_calls_is_one_message_with_threads_and_edits(
    stack: Stack, gate: Gate, start_bridge: StartBridge, hooks: HookPoster
) -> None:
    bridge = await start_bridge()  # after the gate: ingest keeps the notify it sees at start
    session = new_session()
    room_id = await open_room(bridge, stack, hooks, session, prompt="run the steps")
    before = metrics.COALESCED_LINES._value.get()
    gate.held = True
    await post_all(
        hooks,
        [
            bash(session, "t1", "ls src"),
            bash_done(session, "t1", "ls src", "app.py"),
            bash(session, "t2", "npm test"),
            bash(session, "t3", "git status"),
            bash_failed(session, "t2", "npm test", "Exit code 1\n2 tests failed"),
            bash(session, "t4", "make lint"),
            bash_done(session, "t4", "make lint", "lint ok"),
            bash(session, "t5", "make build"),
        ],
    )
    gate.release()
    await drained(bridge)
    events = await stack.users["alice"].messages(room_id, limit=100)
    lines = [e for e in timeline(events) if LINES_FIELD in e["content"]]
    # Two merged messages: t1–t3 (the failure's edit ends that run), then t4–t5.
    assert [len(e["content"][LINES_FIELD]) for e in lines] == [3, 2]
    first, second = lines
    assert first["content"]["body"].splitlines()[1].endswith("npm test")
    assert "<br>" in first["content"]["formatted_body"]
    # Nothing was sent on its own besides these (no line is shown twice).
    for command in ("ls src", "npm test", "git status", "make lint", "make build"):
        assert sum(command in e["content"]["body"] for e in timeline(events)) == 1, command
    # The failure edits its own line and keeps the others.
    edits = related(events, "m.replace", first["event_id"])
    assert len(edits) == 1
    edited = edits[0]["content"]["m.new_content"]["body"].splitlines()
    assert len(edited) == 3 and "❌" in edited[1] and "npm test" in edited[1]
    assert "ls src" in edited[0] and "❌" not in edited[0] and "git status" in edited[2]
    # Output and error go into the merged message's thread, each led by the line it answers.
    replies = related(events, "m.thread", first["event_id"])
    leads = sorted(r["content"]["body"].splitlines()[0] for r in replies)
    assert leads == ["↳ " + edited[1], "↳ " + edited[0]], leads  # the line as it is now
    assert any("2 tests failed" in r["content"]["body"] for r in replies)
    assert any(
        "lint ok" in r["content"]["body"] for r in related(events, "m.thread", second["event_id"])
    )
    assert metrics.COALESCED_LINES._value.get() - before == 5
    # Every hook event is recorded as sent, each line against its merged message.
    thread_id = session.lower()
    rows = await bridge.db.fetch(
        "SELECT anchor, event_id FROM sent_event WHERE thread_id=$1 AND anchor LIKE 'tool:%'",
        thread_id,
    )
    anchors = {r["anchor"]: r["event_id"] for r in rows}
    assert anchors["tool:t1"] == anchors["tool:t3"] == first["event_id"]
    assert anchors["tool:t5"] == second["event_id"]


async def test_small_outputs_of_queued_calls_share_one_reply_in_the_thread(
    stack: Stack, gate: Gate, start_bridge: StartBridge, hooks: HookPoster
) -> None:
    bridge = await start_bridge()
    session = new_session()
    room_id = await open_room(bridge, stack, hooks, session, prompt="run the steps")
    big = "\n".join(f"row {i} " + "y" * 60 for i in range(80))  # over the 4 KB a reply may share
    calls = [(f"w{i}", f"echo w{i}", big if i == 4 else f"out w{i}") for i in range(6)]
    gate.held = True
    await post_all(hooks, calls_with_output(session, calls))
    gate.release()
    await drained(bridge)
    events = await stack.users["alice"].messages(room_id, limit=100)
    merged = [e for e in timeline(events) if LINES_FIELD in e["content"]]
    assert len(merged) == 1 and len(merged[0]["content"][LINES_FIELD]) == 6
    replies = related(events, "m.thread", merged[0]["event_id"])
    # w0–w3 in one reply; w4 too big: alone, cut, with its file; w5 after it (order kept).
    assert [len(r["content"].get(PARTS_FIELD, [None])) for r in replies] == [4, 1, 1, 1], [
        r["content"]["body"][:40] for r in replies
    ]
    shared = replies[0]["content"]["body"].split("\n\n")
    assert [chunk.splitlines()[0] for chunk in shared] == [
        f"↳ 💻 Bash: echo w{i}" for i in range(4)
    ]
    assert all(f"out w{i}" in chunk for i, chunk in enumerate(shared))
    assert replies[1]["content"]["body"].startswith("↳ 💻 Bash: echo w4")
    assert "row 0" in replies[1]["content"]["body"]
    assert replies[2]["content"]["msgtype"] == "m.file"
    assert "out w5" in replies[3]["content"]["body"]
    rows = await bridge.db.fetch(
        "SELECT state FROM hook_event WHERE thread_id=$1 AND event_name LIKE '%ToolUse'",
        session.lower(),
    )
    assert [r["state"] for r in rows] == ["sent"] * 12


@pytest.mark.parametrize("lost_call", ["record_lines", "record_parts"])
async def test_a_merged_message_whose_answer_was_lost_is_found_not_sent_again(
    stack: Stack, start_bridge: StartBridge, hooks: HookPoster, gate: Gate, lost_call: str
) -> None:
    """``record_lines``: the merged lines got through unanswered; ``record_parts``: the merged
    outputs did. Either way each is found in the room, recorded, and not sent again."""
    bridge = await start_bridge()
    session = new_session()
    room_id = await open_room(bridge, stack, hooks, session, prompt="run the steps")
    lost: dict[str, str] = {}

    def lose_first_answer(name: str) -> None:
        record = getattr(bridge.delivery.sent, name)

        async def answer_lost(thread_id: str, event_id: str, *args: Any) -> None:
            if name not in lost:  # the merged message is in the room; the bridge never heard
                lost[name] = event_id
                raise ConnectionError("answer lost")
            await record(thread_id, event_id, *args)

        setattr(bridge.delivery.sent, name, answer_lost)

    lose_first_answer(lost_call)
    gate.held = True
    steps = [(f"u{i}", f"step {i}", f"result {i}") for i in range(6)]
    await post_all(hooks, calls_with_output(session, steps))
    gate.release()
    await drained(bridge)
    assert lost, "the merged send never happened"
    events = await stack.users["alice"].messages(room_id, limit=100)
    for i in range(6):
        shown = [e for e in timeline(events) if f"step {i}" in e["content"]["body"]]
        assert len(shown) == 1 and LINES_FIELD in shown[0]["content"], i
        outputs = [e for e in events if f"result {i}" in e["content"].get("body", "")]
        assert len(outputs) == 1, (i, [e["content"]["body"] for e in outputs])
    assert any(e["event_id"] == lost[lost_call] for e in events)
    states = await bridge.db.fetch(
        "SELECT state FROM hook_event WHERE thread_id=$1 AND event_name LIKE '%ToolUse'",
        session.lower(),
    )
    assert [r["state"] for r in states] == ["sent"] * 12


async def test_coalescing_off_sends_one_message_per_call(
    stack: Stack, start_bridge: StartBridge, hooks: HookPoster, gate: Gate
) -> None:
    bridge = await start_bridge(bridge={"mirror": {"coalesce_lines": 1}})
    session = new_session()
    room_id = await open_room(bridge, stack, hooks, session)
    gate.held = True
    await post_all(hooks, [bash(session, f"v{i}", f"solo {i}") for i in range(4)])
    gate.release()
    await drained(bridge)
    events = await stack.users["alice"].messages(room_id, limit=100)
    solo = [e for e in timeline(events) if "solo " in e["content"]["body"]]
    assert len(solo) == 4 and not any(LINES_FIELD in e["content"] for e in solo)
