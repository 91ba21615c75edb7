"""An operator's image reaches the model through the real Claude Code CLI.

alice posts a PNG into the room of a ``claude -p`` session whose hooks ``install-hooks
--durable`` wrote, while the model is mid-turn. The Stop hook's command shim fetches the file,
writes it on the host and hands Claude the path; the scripted model reads that path, and Claude
Code sends the image to the model as an image content block. Only the model is scripted.

No ``--allowedTools Read``: the file is outside the project, so Claude Code asks permission to
Read it, and the bridge answers allow at once because it is exactly the path of the file alice
attached to this session (``bridge.attachments.allow_read``). alice is never asked.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from claude_bridge.app import Bridge
from claude_bridge.control import decisions
from tests.e2e.conftest import Stack
from tests.e2e.fake_anthropic import TOOL_REPLY, FakeAnthropic
from tests.e2e.test_attachments import png, send_file
from tests.e2e.test_claude_cli import claude_code, joined_room
from tests.e2e.test_control import delivered_mark
from tests.e2e.test_foundation import _until

pytestmark = pytest.mark.e2e


def image_blocks(value: Any) -> list[dict[str, Any]]:
    """Every ``{"type": "image", …}`` content block anywhere in a request body."""
    found: list[dict[str, Any]] = []
    if isinstance(value, dict):
        if value.get("type") == "image":
            found.append(value)
        for item in value.values():
            found += image_blocks(item)
    elif isinstance(value, list):
        for item in value:
            found += image_blocks(item)
    return found


async def test_the_model_gets_the_image_an_operator_posted(
    stack: Stack, bridge: Bridge, model: FakeAnthropic, tmp_path: Path
) -> None:
    claude = await claude_code(stack, model, tmp_path, "--durable")
    session = str(uuid.uuid4())
    running = asyncio.ensure_future(
        claude.print_mode("HOLD: wait for the screenshot", "--session-id", session)
    )
    await model.holding.wait()  # mid-turn: the model has the prompt and has not answered
    room, alice = await joined_room(stack, bridge, session)
    image = png(16, 16, noise=True)
    sent = await send_file(alice, room, image, "screenshot.png", caption="this is the bug")

    async def queued() -> bool:
        return bool(await bridge.control.parts.inbox.queued(session))

    await _until(queued, "alice's image queued for the session")
    model.release()
    rc, out, err = await running

    assert rc == 0, err
    assert out.strip() == TOOL_REPLY  # the model read the file, then answered
    turns = model.turns()
    assert "Stop hook feedback" in turns[1]
    assert "via Matrix: attached screenshot.png (image/png, " in turns[1]
    assert json.dumps("> this is the bug")[1:-1] in turns[1]
    path = claude.home / ".cache" / "claude-bridge" / "attachments" / session
    [written] = list(path.iterdir())
    assert written.read_bytes() == image
    # Claude Code read the path and sent the picture itself to the model.
    blocks = image_blocks(model.requests[-1])
    assert blocks, model.requests[-1]
    source = blocks[-1]["source"]
    assert source["type"] == "base64" and source["media_type"] == "image/png"
    assert base64.b64decode(source["data"]) == image
    await delivered_mark(alice, room, f"@claude-{session}:localhost", sent)
    # Claude Code asked; the bridge allowed it on alice's behalf, no prompt waited for her.
    rows = await bridge.db.fetch("SELECT tool_name, state, decided_by, reason FROM approval")
    assert [tuple(r) for r in rows] == [
        ("Read", "allowed", "@alice:localhost", decisions.ATTACHED_REASON)
    ]
