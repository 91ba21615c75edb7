"""A Read of the file an operator just attached is allowed without a second tap; nothing else is.

Real Synapse, SQLite and Postgres; the file is delivered to a local token (the bridge writes it)
or through the real durable shim, then the PermissionRequest is posted as Claude Code posts it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from claude_bridge.app import Bridge
from claude_bridge.events.catalogue import PERMISSION_REQUEST
from tests.e2e.conftest import HOOK_TOKEN, HookPoster, Stack, StartBridge, hook_payload
from tests.e2e.test_attachments import attached_path, png, run_shim, send_file
from tests.e2e.test_control import (
    command,
    context_of,
    open_thread,
    post_tool_use,
    processed,
    queued,
)
from tests.e2e.test_foundation import _until

pytestmark = pytest.mark.e2e

ALLOW = {
    "hookSpecificOutput": {
        "hookEventName": PERMISSION_REQUEST.name,
        "decision": {"behavior": "allow"},
    }
}


def asks(session: str, tool: str, **tool_input: Any) -> dict[str, Any]:
    return hook_payload(PERMISSION_REQUEST.name, session, tool_name=tool, tool_input=tool_input)


async def local_bridge(start_bridge: StartBridge, tmp_path: Path, **attachments: Any) -> Bridge:
    return await start_bridge(
        hooks={"tokens": {"laptop": {"secret": HOOK_TOKEN, "local": True}}},
        bridge={"attachments": {"local_directory": str(tmp_path / "att"), **attachments}},
    )


async def deliver(bridge: Bridge, hooks: HookPoster, stack: Stack, session: str, room: str) -> str:
    """alice attaches a PNG and a hook answer delivers it: the path Claude was told."""
    await send_file(stack.users["alice"], room, png(), "shot.png")
    await queued(bridge, session.lower(), 1)
    answer = (await hooks.post(post_tool_use(session)))[1]
    return str(attached_path(context_of(answer)))


async def held(bridge: Bridge, hooks: HookPoster, payload: dict[str, Any]) -> None:
    """The request is held for the operators (an approval row pending), not answered."""
    before = await bridge.db.fetchval("SELECT COALESCE(MAX(hook_event_id), 0) FROM approval")
    task = asyncio.create_task(hooks.post(payload))

    async def pending() -> bool:
        state = await bridge.db.fetchval(
            "SELECT state FROM approval WHERE hook_event_id > $1", before
        )
        return state == "pending"

    try:
        await _until(pending, f"held: {payload['tool_name']} {payload['tool_input']}")
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_read_of_the_attached_file_is_allowed_at_once_and_shown(
    stack: Stack, start_bridge: StartBridge, hooks: HookPoster, tmp_path: Path
) -> None:
    bridge = await local_bridge(start_bridge, tmp_path)
    session, room, ghost = await open_thread(stack, bridge, hooks)
    path = await deliver(bridge, hooks, stack, session, room)

    status, answer = await asyncio.wait_for(hooks.post(asks(session, "Read", file_path=path)), 30)
    assert (status, answer) == (200, ALLOW)
    # Posted as already allowed: no question, no instructions, nobody pinged.
    shown = await stack.users["alice"].wait_for(
        lambda e: (
            e["sender"] == ghost
            and "m.new_content" not in e["content"]
            and path in e["content"].get("body", "")
            and "m.relates_to" not in e["content"]
        ),
        room_id=room,
    )
    assert shown["content"]["body"].startswith(
        "✅ Allowed: reading the file @alice:localhost attached\n"
    ), shown["content"]
    assert shown["content"]["m.mentions"] == {}
    assert "React" not in shown["content"]["body"]
    edit = await stack.users["alice"].wait_for(
        lambda e: (
            e["sender"] == ghost
            and "m.new_content" in e["content"]
            and "reading the file" in e["content"]["m.new_content"]["body"]
        ),
        room_id=room,
    )
    body = edit["content"]["m.new_content"]["body"]
    assert body.startswith("✅ Allowed: reading the file alice attached\n"), body
    row = await bridge.db.fetchrow(
        "SELECT actor, action, detail FROM audit_log WHERE action='approval' ORDER BY at DESC"
    )
    assert row is not None and row["actor"] == "@alice:localhost"
    assert row["detail"].endswith("allowed: attached-file")


async def test_nothing_but_an_exact_read_of_this_sessions_attached_file_is_allowed(
    stack: Stack, start_bridge: StartBridge, hooks: HookPoster, tmp_path: Path
) -> None:
    bridge = await local_bridge(start_bridge, tmp_path)
    session, room, ghost = await open_thread(stack, bridge, hooks)
    path = await deliver(bridge, hooks, stack, session, room)
    other, other_room, _ = await open_thread(stack, bridge, hooks)
    other_path = await deliver(bridge, hooks, stack, other, other_room)

    # A viewer's file is never delivered: the path it would get is nobody's.
    admin, victor = stack.users["admin"], stack.users["victor"]
    await command(admin, room, ghost, "!claude invite @victor:localhost viewer")
    await victor.wait_for_invite(room)
    await victor.join(room)
    await processed(bridge, await send_file(victor, room, png(4, 4), "viewer.png"))
    number = int(Path(path).name.split("-", 1)[0])
    guessed = str(Path(path).parent / f"{number + 1}-viewer.png")

    parent, name = str(Path(path).parent), Path(path).name
    for payload in (
        asks(session, "Read", file_path=other_path),  # another session's file
        asks(other, "Read", file_path=path),
        asks(session, "Read", file_path=path + ".secret"),
        asks(session, "Read", file_path=path + "/../../x"),
        asks(session, "Read", file_path=f"{parent}/./{name}"),
        asks(session, "Read", file_path=f"{parent}/../{Path(parent).name}/{name}"),
        asks(session, "Read", file_path=name),  # relative
        asks(session, "Read", file_path=guessed),
        asks(session, "Bash", command=f"cat {path}", description="x"),
        asks(session, "Write", file_path=path, content="x"),
        asks(session, "Edit", file_path=path, old_string="a", new_string="b"),
    ):
        await held(bridge, hooks, payload)
    allowed = await bridge.db.fetchval("SELECT COUNT(*) FROM approval WHERE state='allowed'")
    assert allowed == 0


async def test_the_switch_turns_it_off(
    stack: Stack, start_bridge: StartBridge, hooks: HookPoster, tmp_path: Path
) -> None:
    bridge = await local_bridge(start_bridge, tmp_path, allow_read=False)
    session, room, _ = await open_thread(stack, bridge, hooks)
    path = await deliver(bridge, hooks, stack, session, room)
    await held(bridge, hooks, asks(session, "Read", file_path=path))


async def test_a_file_the_durable_shim_wrote_is_read_without_asking(
    stack: Stack, bridge: Bridge, hooks: HookPoster, tmp_path: Path
) -> None:
    session, room, _ = await open_thread(stack, bridge, hooks)
    await send_file(stack.users["alice"], room, png(), "phone.png")
    await queued(bridge, session.lower(), 1)
    code, out, err = await run_shim(stack, tmp_path, [], post_tool_use(session))
    assert code == 0, err
    path = attached_path(context_of(json.loads(out)))
    assert path.is_file()
    code, out, err = await run_shim(stack, tmp_path, [], asks(session, "Read", file_path=str(path)))
    assert code == 0, err
    assert json.loads(out) == ALLOW
