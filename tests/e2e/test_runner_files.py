"""An operator's file reaches a runner session (issue 15, files): alice posts a PNG into the room
of an idle session ``claude-bridge runner`` started; the runner announces its attachments root
with every poll, fetches the file with its token, writes it under that root and types the text
naming the path; the scripted model reads the path, the bridge allows that Read at once (the
file alice attached), and Claude Code sends the picture to the model as an image block. Real runner, real CLI in tmux, real Synapse, both stores."""

from __future__ import annotations

import base64

import pytest

from claude_bridge.app import Bridge
from tests.e2e.conftest import Stack
from tests.e2e.fake_anthropic import TOOL_REPLY, FakeAnthropic
from tests.e2e.host_runner import HostRunner
from tests.e2e.test_attachments import png, send_file
from tests.e2e.test_attachments_cli import image_blocks
from tests.e2e.test_foundation import _until
from tests.e2e.test_runner import body, idle_session, runner, shows

pytestmark = pytest.mark.e2e
__all__ = ["runner"]  # the fixture, shared with test_runner.py


async def test_an_operators_image_reaches_the_model_of_a_runner_session(
    stack: Stack, bridge: Bridge, runner: HostRunner, model: FakeAnthropic
) -> None:
    admin, alice = stack.users["admin"], stack.users["alice"]
    session, room = await idle_session(stack, bridge, runner)
    image = png(16, 16, noise=True)
    await send_file(alice, room, image, "screenshot.png", caption="this is the bug")
    # The file lies outside the project folder, so Claude Code asks before reading it; the
    # bridge allows exactly that Read of the file alice attached (bridge.attachments.allow_read)
    # without asking her again.
    allowed = await shows(alice, room, session, "Allowed: reading the file")
    assert "screenshot.png" in body(allowed), body(allowed)

    async def seen() -> bool:
        return any(image_blocks(r) for r in model.requests)

    try:
        await _until(seen, "a model request carrying the image")
    except AssertionError:
        raise AssertionError(f"runner log:\n{runner.output()[-3000:]}") from None
    folder = runner.claude.home / ".cache" / "claude-bridge" / "attachments" / session
    [written] = list(folder.iterdir())
    assert written.read_bytes() == image
    typed = next(t for t in model.turns() if "via Matrix: attached screenshot.png" in t)
    assert str(written) in typed and "claude-bridge:" not in typed  # named, nothing failed
    source = next(b for r in model.requests for b in image_blocks(r))["source"]
    assert source["media_type"] == "image/png" and base64.b64decode(source["data"]) == image
    await shows(admin, room, session, TOOL_REPLY)  # the turn went on after the Read
    jobs = await bridge.db.fetch("SELECT state FROM runner_jobs WHERE kind='type'")
    assert [j["state"] for j in jobs] == ["done"]
