"""Limits that hold under abuse, on real Synapse and both stores.

Replays are deduplicated by the ``Idempotency-Key`` the command shim gives each event (run here
as the real shim process, as ``install-hooks`` writes it), never by the body: byte-identical
events are distinct events.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from claude_bridge.app import Bridge
from tests.e2e.conftest import HOOK_TOKEN, HookPoster, Stack, StartBridge, hook_payload, new_session
from tests.e2e.proxy import HomeserverProxy
from tests.e2e.test_coalescing import drained, open_room, timeline
from tests.unit.test_shim import Run, fast_command, run_command, spooled

pytestmark = pytest.mark.e2e

HOOKS = "/claude/v1/hooks"
LOST = "2"
"""The shim's --timeout (s) for a call whose answer the test withholds: it gives up and spools."""


class Shim:
    """The real ``claude-bridge-hook`` process with one spool directory, as one machine runs it."""

    def __init__(self, url: str, spool: Path) -> None:
        self.url = url
        self.spool = spool
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_BRIDGE_")}
        self.env.update(CLAUDE_BRIDGE_SPOOL=str(spool), CLAUDE_BRIDGE_TOKEN=HOOK_TOKEN)

    async def send(
        self, payload: dict[str, Any], *, url: str | None = None, timeout: str = "30"
    ) -> Run:
        body = json.dumps(payload).encode()
        run = await run_command(fast_command(url or self.url, "--timeout", timeout), body, self.env)
        assert run.rc == 0, run.stderr
        return run

    async def send_lost(
        self, proxy: HomeserverProxy, payload: dict[str, Any], *, arrives: bool
    ) -> str:
        """Send through ``proxy``, which withholds the answer: the bridge stores the event
        (``arrives``) or never sees it. Either way the shim gives up after sending and spools it
        as maybe delivered; returns the spooled file's name."""
        rule = proxy.hang(method="POST", path=HOOKS, forward=arrives, times=1)
        call = asyncio.create_task(self.send(payload, url=proxy.url, timeout=LOST))
        await proxy.wait_holding(rule)  # with ``arrives``: stored and answered, answer held
        run = await call
        proxy.release(rule)
        assert "spooled" in run.stderr, run.stderr
        [name] = spooled(self.spool)
        assert name.endswith(".sent.json"), name
        return name


@pytest.fixture
async def proxy(stack: Stack) -> Any:
    proxy = await HomeserverProxy(f"http://{stack.config['hooks']['listen']}").start()
    yield proxy
    await proxy.stop()


@pytest.fixture
def shim(stack: Stack, tmp_path: Path) -> Shim:
    return Shim(f"http://{stack.config['hooks']['listen']}", tmp_path / "spool")


async def stored(bridge: Bridge, session: str, name: str) -> list[dict[str, Any]]:
    rows = await bridge.db.fetch(
        "SELECT payload FROM hook_event WHERE thread_id=$1 AND event_name=$2 ORDER BY id",
        session.lower(),
        name,
    )
    return [json.loads(r["payload"]) for r in rows]


async def bodies(stack: Stack, bridge: Bridge, room_id: str) -> list[str]:
    await drained(bridge)
    events = await stack.users["alice"].messages(room_id, limit=200)
    return [str(e["content"].get("body", "")) for e in timeline(events)]


async def test_a_replayed_spooled_event_with_the_same_key_is_stored_once(
    stack: Stack, start_bridge: StartBridge, hooks: HookPoster, shim: Shim, proxy: HomeserverProxy
) -> None:
    bridge = await start_bridge()
    session = new_session()
    room_id = await open_room(bridge, stack, hooks, session)
    note = hook_payload("Notification", session, message="Claude needs your permission (once)")

    # Stored, but the answer is lost: the shim spools it as maybe delivered, under its key.
    await shim.send_lost(proxy, note, arrives=True)
    assert len(await stored(bridge, session, "Notification")) == 1
    # The next call replays it with the same key before its own event, after a restart too.
    await bridge.stop()
    bridge = await start_bridge()
    await shim.send(hook_payload("Stop", session, last_assistant_message="Done for now."))

    assert spooled(shim.spool) == []
    assert len(await stored(bridge, session, "Notification")) == 1
    assert len(await stored(bridge, session, "Stop")) == 1
    shown = await bodies(stack, bridge, room_id)
    assert sum("needs your permission (once)" in b for b in shown) == 1, shown


async def test_a_second_identical_continue_prompt_is_delivered(
    stack: Stack, start_bridge: StartBridge, hooks: HookPoster, shim: Shim, proxy: HomeserverProxy
) -> None:
    bridge = await start_bridge()
    session = new_session()
    room_id = await open_room(bridge, stack, hooks, session)
    prompt = hook_payload("UserPromptSubmit", session, prompt="continue")
    reply = hook_payload("Stop", session, last_assistant_message="Continuing with step two.")

    await shim.send(prompt)
    await shim.send(reply)
    # The same bytes again, a new prompt: its first attempt never reaches the bridge.
    await shim.send_lost(proxy, prompt, arrives=False)
    await shim.send(hook_payload("Stop", session, last_assistant_message="And step three."))

    assert [p["prompt"] for p in await stored(bridge, session, "UserPromptSubmit")] == [
        "continue",
        "continue",
    ]
    shown = await bodies(stack, bridge, room_id)
    said = [b for b in shown if b.endswith("continue") or "step" in b]
    assert len(said) == 4 and "step two" in said[1] and "step three" in said[3], shown
    assert said[0].endswith("continue") and said[2].endswith("continue"), shown


async def test_the_same_notification_twice_is_stored_and_shown_twice(
    stack: Stack, start_bridge: StartBridge, hooks: HookPoster, shim: Shim, proxy: HomeserverProxy
) -> None:
    bridge = await start_bridge()
    session = new_session()
    room_id = await open_room(bridge, stack, hooks, session)
    note = hook_payload("Notification", session, message="Claude is waiting for your input")

    # A plain http hook sends no key: nothing is deduplicated by body.
    assert (await hooks.post(note))[0] == 200
    assert (await hooks.post(note))[0] == 200
    # Through the shim, a third one whose first attempt was lost is replayed and kept.
    await shim.send_lost(proxy, note, arrives=False)
    await shim.send(hook_payload("Stop", session, last_assistant_message="Still here."))

    assert len(await stored(bridge, session, "Notification")) == 3
    shown = await bodies(stack, bridge, room_id)
    assert sum("waiting for your input" in b for b in shown) == 3, shown
