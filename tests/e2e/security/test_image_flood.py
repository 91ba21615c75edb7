"""Images out (issue 16): one tool call's images are capped, on real Synapse.

A hook body is at most ``hooks.max_body_bytes`` (1 MiB), but a tiny GIF is under 50 bytes of
base64: one PostToolUse of an MCP tool (a malicious or prompt-injected MCP server) could list
ten thousand images, and each would be uploaded and posted, pinging every phone in the room,
from one request (the appservice is not rate-limited). At most ``MAX_PICTURES`` are posted; one
line says how many more there were.
"""

from __future__ import annotations

import base64

import pytest

from claude_bridge.app import Bridge
from claude_bridge.render.images import MAX_PICTURES
from tests.e2e.conftest import HookPoster, Stack, hook_payload, new_session
from tests.e2e.test_fault_slow_and_limited import drained, room_of, until
from tests.e2e.test_images import captured, images, in_thread, line_of, pre_tool_use, room_events

pytestmark = pytest.mark.e2e

GIF = base64.b64encode(
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
).decode()
SENT = 300


async def test_one_calls_images_are_capped_and_the_rest_counted(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session = new_session()
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": GIF}}
    post = captured("mcp.image", session, tool_response=[block] * SENT)
    assert (await hooks.post(hook_payload("SessionStart", session)))[0] == 200
    room = await room_of(bridge, session)
    for payload in (pre_tool_use(post), post):
        status, body = await hooks.post(payload)
        assert status == 200, body
    await until(lambda: drained(bridge, session), "the call delivered")
    events = await room_events(stack, room)
    thread = in_thread(events, line_of(events, "images › screenshot")["event_id"])
    assert len(images(thread)) == MAX_PICTURES < SENT
    notes = [e["content"]["body"] for e in thread if e["content"]["msgtype"] != "m.image"]
    assert any(f"{SENT - MAX_PICTURES} more images" in n for n in notes), notes
