"""Bridge unreachable while Claude Code keeps working (issue 5, item 7), on real Synapse.

``http`` hooks fail open: while the bridge is down those events are gone. The next event of the
session reveals the gap, and the room gets the missing prompts, replies and tool calls from the
session transcript, after a "caught up after an outage" notice — once, nothing doubled. The shim's
replays with the same ``Idempotency-Key`` are stored once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from claude_bridge.app import Bridge
from tests.claude_transcript import TranscriptWriter
from tests.e2e.conftest import HOOK_TOKEN, HookPoster, Stack, hook_payload, new_session
from tests.images import b64, png

pytestmark = pytest.mark.e2e

MARKER = "⏪ Caught up after an outage"


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)
    return result


class Claude:
    """One Claude Code session with ``http`` hooks: writes its transcript, fires its hooks."""

    def __init__(self, hooks: HookPoster, projects: Path) -> None:
        self.hooks = hooks
        self.session = new_session()
        self.path = projects / "-home-dev-projects-demo-app" / f"{self.session}.jsonl"
        self.transcript = TranscriptWriter(self.path, self.session)

    async def hook(self, name: str, **fields: Any) -> int | None:
        """The hook's status, or None when the bridge is unreachable (Claude carries on)."""
        payload = hook_payload(name, self.session, transcript_path=str(self.path), **fields)
        try:
            return (await self.hooks.post(payload))[0]
        except aiohttp.ClientConnectionError:
            return None

    async def turn(self, prompt: str, tool: str, output: str, answer: str) -> list[int | None]:
        statuses = []
        self.transcript.prompt(prompt)
        statuses.append(await self.hook("UserPromptSubmit", prompt=prompt))
        self.transcript.thinking("Let me think about it.")
        tool_input = {"command": f"{tool} --now", "description": "Run it"}
        use = self.transcript.tool_use("Bash", tool_input)
        statuses.append(await self.hook("PreToolUse", tool_use_id=use, tool_input=tool_input))
        self.transcript.tool_result(use, output)
        statuses.append(await self.hook("PostToolUse", tool_use_id=use, tool_input=tool_input,
                                        tool_response={"stdout": output, "stderr": ""}))  # fmt: skip
        self.transcript.text(answer)
        statuses.append(await self.hook("Stop", last_assistant_message=answer))
        return statuses


@pytest.fixture
def projects(tmp_path: Path) -> Path:
    return tmp_path / "projects"


def catchup_config(projects: Path) -> dict[str, Any]:
    # The host is the bridge's own machine: only a token marked local may make it read a transcript.
    return {
        "catchup": {"transcript_dirs": [str(projects)]},
        "tokens": {"laptop": {"secret": HOOK_TOKEN, "local": True}},
    }


async def drained(bridge: Bridge) -> bool:
    return not await bridge.db.fetchval("SELECT COUNT(*) FROM hook_event WHERE state='pending'")


async def room_bodies(stack: Stack, bridge: Bridge, session: str) -> list[str]:
    await until(lambda: drained(bridge), "everything delivered")
    thread = await bridge.threads.get(session)
    assert thread is not None and thread.room_id
    admin = stack.users["admin"]
    await admin.join(thread.room_id)
    ghost = f"@claude-{session}:localhost"
    return [
        e["content"]["body"]
        for e in await admin.messages(thread.room_id, limit=1000)
        if e["sender"] == ghost and e["type"] == "m.room.message"
    ]


def where(bodies: list[str], text: str) -> int:
    found = [i for i, b in enumerate(bodies) if text in b]
    assert len(found) == 1, (text, found, bodies)
    return found[0]


async def test_an_outage_is_caught_up_from_the_transcript_once(
    stack: Stack, start_bridge: Any, hooks: HookPoster, projects: Path
) -> None:
    bridge: Bridge = await start_bridge(hooks=catchup_config(projects))
    claude = Claude(hooks, projects)
    assert await claude.hook("SessionStart") == 200
    assert await claude.turn("first prompt", "pytest", "3 passed", "First answer.") == [200] * 4
    await until(lambda: drained(bridge), "the first turn delivered")
    await bridge.stop()

    # The bridge is down; Claude Code keeps working and its http hooks fail open.
    lost = await claude.turn("second prompt", "ruff", "All checks passed", "Second answer.")
    assert lost == [None] * 4

    bridge = await start_bridge(hooks=catchup_config(projects))
    claude.transcript.prompt("third prompt")
    assert await claude.hook("UserPromptSubmit", prompt="third prompt") == 200
    bodies = await room_bodies(stack, bridge, claude.session)
    marker = where(bodies, MARKER)
    assert "missed 4 items" in bodies[marker]
    order = [where(bodies, t) for t in ("First answer.", MARKER, "second prompt", "Bash: ruff --now",
                                         "Second answer.", "third prompt")]  # fmt: skip
    assert order == sorted(order), bodies
    assert where(bodies, "All checks passed") > where(bodies, "Bash: ruff --now")  # its output
    # Nothing before the outage was posted again.
    for text in ("first prompt", "Bash: pytest --now", "3 passed", "First answer."):
        where(bodies, text)

    # Later events, and another restart, find nothing missing: no second catch-up.
    claude.transcript.text("Third answer.")
    assert await claude.hook("Stop", last_assistant_message="Third answer.") == 200
    await until(lambda: drained(bridge), "the third answer delivered")
    await bridge.stop()
    bridge = await start_bridge(hooks=catchup_config(projects))
    claude.transcript.prompt("fourth prompt")
    assert await claude.hook("UserPromptSubmit", prompt="fourth prompt") == 200
    bodies = await room_bodies(stack, bridge, claude.session)
    assert sum(MARKER in b for b in bodies) == 1
    assert [b for b, n in Counter(bodies).items() if n > 1] == []


async def test_an_image_read_during_an_outage_is_posted_by_the_catch_up(
    stack: Stack, start_bridge: Any, hooks: HookPoster, projects: Path
) -> None:
    """The transcript keeps the image Claude read as a content block: catch-up posts it as the
    live PostToolUse would, an ``m.image`` with the file's name, not ``[image]``."""
    bridge: Bridge = await start_bridge(hooks=catchup_config(projects))
    claude = Claude(hooks, projects)
    assert await claude.hook("SessionStart") == 200
    await until(lambda: drained(bridge), "the start delivered")
    await bridge.stop()

    image = png(24, 16)
    tool_input = {"file_path": "/home/dev/projects/demo-app/plot.png"}
    use = claude.transcript.tool_use("Read", tool_input)
    claude.transcript.image_result(use, b64(image))
    assert await claude.hook("PreToolUse", tool_name="Read", tool_use_id=use,
                             tool_input=tool_input) is None  # fmt: skip

    bridge = await start_bridge(hooks=catchup_config(projects))
    claude.transcript.prompt("what does the plot show?")
    assert await claude.hook("UserPromptSubmit", prompt="what does the plot show?") == 200
    bodies = await room_bodies(stack, bridge, claude.session)
    assert "[image]" not in "".join(bodies)
    thread = await bridge.threads.get(claude.session)
    assert thread is not None and thread.room_id
    events = await stack.users["admin"].messages(thread.room_id, limit=1000)
    (shown,) = [e for e in events if e["content"].get("msgtype") == "m.image"]
    assert shown["content"]["body"] == "plot.png"
    assert shown["content"]["info"]["w"] == 24 and shown["content"]["info"]["h"] == 16


async def test_events_the_bridge_failed_to_store_are_caught_up(
    stack: Stack, start_bridge: Any, hooks: HookPoster, projects: Path
) -> None:
    bridge: Bridge = await start_bridge(hooks=catchup_config(projects))
    claude = Claude(hooks, projects)
    assert await claude.hook("SessionStart") == 200
    assert await claude.turn("first prompt", "make", "built", "Built it.") == [200] * 4
    outbox = bridge.hooks.ingest.outbox
    append = outbox.append

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("database away")

    outbox.append = broken  # type: ignore[method-assign]
    assert await claude.turn("second prompt", "make test", "1 failed", "One failure.") == [503] * 4
    outbox.append = append  # type: ignore[method-assign]
    claude.transcript.prompt("fix it")
    assert await claude.hook("UserPromptSubmit", prompt="fix it") == 200
    bodies = await room_bodies(stack, bridge, claude.session)
    order = [where(bodies, t) for t in ("Built it.", MARKER, "second prompt", "One failure.", "fix it")]  # fmt: skip
    assert order == sorted(order), bodies


async def test_transcripts_outside_the_configured_dirs_are_not_read(
    stack: Stack, start_bridge: Any, hooks: HookPoster, projects: Path, tmp_path: Path
) -> None:
    bridge: Bridge = await start_bridge(hooks=catchup_config(tmp_path / "elsewhere"))
    claude = Claude(hooks, projects)
    assert await claude.hook("SessionStart") == 200
    await bridge.stop()
    assert await claude.turn("secret prompt", "cat ~/.ssh/id_rsa", "KEY", "Here.") == [None] * 4
    bridge = await start_bridge(hooks=catchup_config(tmp_path / "elsewhere"))
    assert await claude.hook("UserPromptSubmit", prompt="next") == 200
    bodies = await room_bodies(stack, bridge, claude.session)
    assert not any(MARKER in b or "secret prompt" in b for b in bodies)


async def test_a_maybe_delivered_replay_is_stored_once(
    start_bridge: Any, hooks: HookPoster
) -> None:
    """By its Idempotency-Key (the shim sends one per event), never by its body."""
    bridge: Bridge = await start_bridge()
    session = new_session()
    payload = hook_payload("UserPromptSubmit", session, prompt="only once")
    key = {"Idempotency-Key": "3f1c0a9e5b7d4c2a8e6f1b3d5a7c9e0f"}
    assert (await hooks.post(payload, **key))[0] == 200
    header = "X-Claude-Bridge-Spooled"
    assert (await hooks.post(payload, **key, **{header: "maybe-delivered"}))[0] == 200

    async def count() -> int:
        return int(await bridge.db.fetchval(
            "SELECT COUNT(*) FROM hook_event WHERE thread_id=$1", session
        ))  # fmt: skip

    assert await count() == 1
    # The key is in the store: a restarted bridge still knows it.
    await bridge.stop()
    bridge = await start_bridge()
    assert (await hooks.post(payload, **key, **{header: "maybe-delivered"}))[0] == 200
    assert (await hooks.post(payload, **key, **{header: "1"}))[0] == 200
    assert await count() == 1
    # The same body under another key, or with none (a plain http hook), is another event.
    other = {"Idempotency-Key": "another-key"}
    assert (await hooks.post(payload, **other, **{header: "maybe-delivered"}))[0] == 200
    assert (await hooks.post(payload, **{header: "maybe-delivered"}))[0] == 200
    assert (await hooks.post(payload))[0] == 200
    assert await count() == 4
    # A key that is not one is refused, and nothing is stored.
    status, body = await hooks.post(payload, **{"Idempotency-Key": "no spaces allowed"})
    assert status == 400 and "Idempotency-Key" in body["error"]
    assert await count() == 4
