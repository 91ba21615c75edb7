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

from claude_bridge.api.threads import MAX_BODY
from claude_bridge.app import Bridge
from tests.e2e.conftest import HOOK_TOKEN, HookPoster, Stack, StartBridge, hook_payload, new_session
from tests.e2e.proxy import HomeserverProxy
from tests.e2e.test_coalescing import Gate, bash, bash_done, drained, open_room, related, timeline
from tests.e2e.test_coalescing import gate as gate  # the fixture holding delivery back
from tests.e2e.test_control import permission_request
from tests.e2e.test_foundation import _until
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


async def stored_count(bridge: Bridge, session: str, name: str | None) -> int:
    """Hook events of the session stored (of that name)."""
    where = "" if name is None else " AND event_name=$2"
    args = [session.lower()] if name is None else [session.lower(), name]
    query = f"SELECT COUNT(*) FROM hook_event WHERE thread_id=$1{where}"
    return int(await bridge.db.fetchval(query, *args))


def latest_text(events: list[dict[str, Any]], original: dict[str, Any]) -> str:
    """What ``original`` shows now: the body of its last edit, or its own."""
    edits = related(events, "m.replace", original["event_id"])
    if edits:
        return str(edits[-1]["content"]["m.new_content"]["body"])
    return str(original["content"]["body"])


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


# --- a burst on one thread ----------------------------------------------------------------------

TURNS = 10
CAP = 200
"""``bridge.mirror.backlog_events`` for the burst: the default."""
FOLD = "⏩"


def burst(session: str) -> tuple[list[dict[str, Any]], list[str]]:
    """1,500 hook events of one session, and the texts of those a person must see, in order:
    10 turns of a prompt, tool calls with their output and a reply, two Notifications on the
    way; the last turn ends in a PermissionRequest (the session then waits for it)."""
    events: list[dict[str, Any]] = []
    must_see: list[str] = []

    def add(payload: dict[str, Any], text: str | None = None) -> None:
        events.append(payload)
        if text is not None:
            must_see.append(text)

    notes = {2: "Still working on it", 5: "Look at this now"}
    calls = 739  # 1,500 − 10 prompts − 9 replies − 2 notifications − 1 approval = 2 × 739
    for turn in range(TURNS):
        prompt = f"prompt number {turn}"
        add(hook_payload("UserPromptSubmit", session, prompt=prompt), prompt)
        n = calls // TURNS if turn < TURNS - 1 else calls - (calls // TURNS) * (TURNS - 1)
        for call in range(n):
            use, cmd = f"toolu_{turn:02d}_{call:03d}", f"echo turn {turn} call {call}"
            add(bash(session, use, cmd))
            add(bash_done(session, use, cmd, f"output {turn}.{call}"))
            if turn in notes and call == n // 2:
                add(hook_payload("Notification", session, message=notes[turn]), notes[turn])
        if turn < TURNS - 1:
            reply = f"reply number {turn}"
            add(hook_payload("Stop", session, last_assistant_message=reply), reply)
    add(permission_request(session, "rm -rf build/ # burst approval"), "burst approval")
    assert len(events) == 1_500
    return events, must_see


async def test_a_burst_of_1500_events_folds_tool_detail_and_keeps_what_people_must_see(
    stack: Stack, gate: Gate, start_bridge: StartBridge, hooks: HookPoster
) -> None:
    bridge = await start_bridge()
    session = new_session()
    room_id = await open_room(bridge, stack, hooks, session)
    ghost = f"@claude-{session.lower()}:localhost"
    before = await bridge.db.fetchval("SELECT COUNT(*) FROM sent_event WHERE thread_id=$1", session)
    gate.held = True  # everything is queued before delivery starts: the state a burst leaves
    payloads, must_see = burst(session)
    for payload in payloads[:-1]:
        status, body = await hooks.post(payload)
        assert status == 200, body
    held = asyncio.create_task(hooks.post(payloads[-1]))  # answered when someone decides
    await _until(lambda: stored_count(bridge, session, "PermissionRequest"), "the request stored")
    started = asyncio.get_running_loop().time()
    gate.release()

    alice = stack.users["alice"]
    prompt = await alice.wait_for(
        lambda e: e["sender"] == ghost and "burst approval" in e["content"].get("body", ""),
        room_id=room_id,
    )
    await alice.react(room_id, prompt["event_id"], "✅")
    status, answer = await asyncio.wait_for(held, 60)
    assert status == 200 and answer["hookSpecificOutput"]["decision"]["behavior"] == "allow"
    await drained(bridge)
    print(f"burst sent in {asyncio.get_running_loop().time() - started:.1f} s")

    room = await alice.messages(room_id, limit=3_000)
    shown = [str(e["content"].get("body", "")) for e in timeline(room)]
    sent = int(
        await bridge.db.fetchval(
            "SELECT COUNT(DISTINCT event_id) FROM sent_event WHERE thread_id=$1", session
        )
    ) - int(before)
    print(f"{sent} Matrix events for the burst, {len(shown)} in the timeline")

    # Every prompt, reply, notification and the approval: there, once, in order.
    at = [next((i for i, b in enumerate(shown) if text in b), -1) for text in must_see]
    assert -1 not in at and at == sorted(at), str(list(zip(must_see, at, strict=True)))
    for text in must_see:
        assert sum(text in b for b in shown) == 1, text

    # One notice tells the room how much was folded; it says what the store says.
    notices = [e for e in timeline(room) if e["content"].get("body", "").startswith(FOLD)]
    assert len(notices) == 1, [e["content"]["body"] for e in notices]
    folded = int(
        await bridge.db.fetchval(
            "SELECT COUNT(*) FROM hook_event WHERE thread_id=$1 "
            "AND (state='folded' OR folded IS NOT NULL)",
            session,
        )
    )
    final = latest_text(room, notices[0])
    print(f"{folded} events folded: {final}")
    assert f"{folded:,} " in final, final
    assert at[0] < shown.index(notices[0]["content"]["body"]) < at[1]  # where folding began
    # The tool detail was folded: what the room got is bounded by the cap, not by the burst.
    # Of the 1,478 tool events at most the newest CAP / 2 (and the outputs of their calls) are
    # shown; every one of them, and each prompt, reply and ping, costs at most one Matrix event.
    assert folded >= 1_478 - CAP // 2 - 10, folded
    assert sent <= len(must_see) + CAP // 2, sent
    # Nothing else is lost: every accepted event is stored, folded ones too.
    assert int(await stored_count(bridge, session, None)) >= 1_500


# --- request bodies -----------------------------------------------------------------------------


async def test_deeply_nested_json_is_a_400_on_the_hook_and_the_threads_api(
    stack: Stack, start_bridge: StartBridge, hooks: HookPoster
) -> None:
    """Python's JSON decoder recurses: 100,000 nested arrays (200 KB, under the body limit)
    raise RecursionError. Both endpoints a hook token reaches answer 400 and store nothing."""
    bridge = await start_bridge()
    session = new_session()
    assert (await hooks.post(hook_payload("SessionStart", session)))[0] == 200
    deep = b"[" * 100_000 + b"]" * 100_000
    status, body = await hooks.post(None, raw=deep)
    assert status == 400 and "nested too deeply" in body["error"], body

    url = f"{hooks.url}/claude/v1/threads/{session.lower()}/messages"
    headers = {
        "Authorization": f"Bearer {HOOK_TOKEN}",
        "Content-Type": "application/json",
        "X-Claude-Session-Id": session,
    }
    async with hooks.http.post(url, data=deep, headers=headers) as resp:
        assert resp.status == 400, await resp.text()
        assert "JSON" in (await resp.json())["error"]
    # The threads API reads its body as the hook server does: standard JSON only, and no more
    # bytes than the longest text could need (under hooks.max_body_bytes, 1 MiB).
    async with hooks.http.post(url, data=b'{"text": NaN}', headers=headers) as resp:
        assert resp.status == 400, await resp.text()
    huge = json.dumps({"text": "x", "pad": "y" * (MAX_BODY + 1)})
    async with hooks.http.post(url, data=huge, headers=headers) as resp:
        assert resp.status == 413, await resp.text()
    assert await stored_count(bridge, session, None) == 1
