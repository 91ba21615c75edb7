"""A flood of hand-offs from one hook token's own sessions (security.md, found in the second round
of attacks), on real Synapse and both stores.

Each hand-off waiting for a decision stores a proposal and pings the operators. So: at most
``bridge.control.handoff_max_waiting`` wait in one thread, counted when the next is posted,
whichever session posts it; the sessions of one hook token post at most
``handoffs_per_minute`` together; and one nobody decides is withdrawn after ``handoff_expiry``.
A refusal is an answer to the sending Claude (API 429, the MCP tool's error); nothing reaches the
room. The legitimate hand-off still goes through.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from mcp.server.mcpserver.exceptions import ToolError

from claude_bridge.matrix.inbound_events import HANDOFF_FIELD
from claude_bridge.mcp_server import BridgeAPI
from tests.e2e.conftest import HOOK_TOKEN, HookPoster, Stack, StartBridge
from tests.e2e.security.rooms import WAIT, open_room
from tests.e2e.security.test_who_speaks import (
    ALICE,
    answer_to,
    ghost_says,
    messages_of,
    post_hand_off,
    pre_tool_use,
    replies_to,
)
from tests.e2e.test_control import context_of, processed
from tests.e2e.test_foundation import _until

pytestmark = pytest.mark.e2e


async def try_hand_off(
    stack: Stack,
    source: str,
    target: str,
    body: str,
    token: str = HOOK_TOKEN,
    key: str | None = None,
) -> tuple[int, Any, str | None]:
    """(status, answer, Retry-After) of one hand-off through the threads API."""
    url = f"http://{stack.config['hooks']['listen']}/claude/v1/threads/{target.lower()}/messages"
    headers = {"Authorization": f"Bearer {token}", "X-Claude-Session-Id": source}
    if key is not None:
        headers["Idempotency-Key"] = key
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json={"text": body}, headers=headers) as resp:
            return resp.status, await resp.json(), resp.headers.get("Retry-After")


async def hand_offs_in_room(stack: Stack, room: str) -> list[dict[str, Any]]:
    """Every hand-off message in the room, as the homeserver has it."""
    alice = stack.users["alice"]
    return [e for e in await alice.messages(room, 200) if HANDOFF_FIELD in e.get("content", {})]


async def test_the_cap_holds_against_a_burst_from_several_sessions_of_one_token(
    stack: Stack, start_bridge: StartBridge, hooks: HookPoster
) -> None:
    bridge = await start_bridge(
        bridge={"control": {"handoff_max_waiting": 2, "handoffs_per_minute": 0}}
    )
    a1, _, _ = await open_room(stack, bridge, hooks)
    a2, _, _ = await open_room(stack, bridge, hooks)
    b, room_b, ghost_b = await open_room(stack, bridge, hooks)
    alice = stack.users["alice"]

    # Six at once, three from each of two sessions of the same token: two get in.
    sources = [a1, a2] * 3
    tries = await asyncio.gather(
        *(try_hand_off(stack, s, b, f"flood {i}", key=f"k{i}") for i, s in enumerate(sources))
    )
    accepted = [answer for status, answer, _ in tries if status == 201]
    refused = [answer for status, answer, _ in tries if status != 201]
    assert len(accepted) == 2 and len(refused) == 4, tries
    assert all(a["delivery"] == "proposed" for a in accepted)
    for answer in refused:
        assert answer["error"].startswith("hand-off refused: thread"), answer
        assert "handoff_max_waiting" in answer["error"] and "Nothing was posted" in answer["error"]
    for answer in accepted:
        await processed(bridge, answer["event_id"])
    assert [m[2] for m in await messages_of(bridge, b)] == ["proposed", "proposed"]
    # The other session, the MCP tool's way: the sending Claude reads why.
    mcp = BridgeAPI(f"http://{stack.config['hooks']['listen']}", HOOK_TOKEN, a2)
    with pytest.raises(ToolError, match="bridge answered 429: hand-off refused: thread"):
        await mcp.call("POST", f"/claude/v1/threads/{b.lower()}/messages", json={"text": "x"})
    status, _, wait = await try_hand_off(stack, a1, b, "once more")
    assert status == 429 and 1 <= int(wait or 0) <= 60
    # A request repeated after a lost answer (same session and key) is not refused: it posts
    # nothing new, and the answer is the hand-off already in the room.
    n = next(i for i, (status, _, _) in enumerate(tries) if status == 201)
    status, again, _ = await try_hand_off(stack, sources[n], b, f"flood {n}", key=f"k{n}")
    assert status == 201 and again["event_id"] == tries[n][1]["event_id"], again
    status, answer, _ = await try_hand_off(stack, sources[n], b, "a new one", key="k-new")
    assert status == 429, answer
    # Nothing refused reached the room: two hand-offs, two notices pinging the operators.
    assert len(await hand_offs_in_room(stack, room_b)) == 2
    for answer in accepted:
        notice = await alice.wait_for(
            lambda e, a=answer: e["sender"] == ghost_b and replies_to(e) == a["event_id"],
            room_id=room_b,
            timeout=WAIT,
        )
        assert ALICE in notice["content"]["m.mentions"]["user_ids"]

    # The legitimate one still goes through: ✅ lets the first reach Claude; that frees a place.
    first = accepted[0]
    await alice.react(room_b, first["event_id"], "✅")
    await ghost_says(alice, room_b, ghost_b, first["event_id"], f"Let through by {ALICE}")
    context = context_of(await answer_to(hooks, pre_tool_use(b)))
    assert context.startswith("Hand-off from the Claude of another Claude Code session")
    third = await post_hand_off(stack, a2, b, "after a decision")
    assert third["delivery"] == "proposed"
    status, answer, _ = await try_hand_off(stack, a1, b, "and one too many")
    assert status == 429, answer
    await processed(bridge, third["event_id"])
    states = sorted(m[2] for m in await messages_of(bridge, b))  # the burst's order is the race's
    assert states == ["delivered", "proposed", "proposed"]
    assert len(await hand_offs_in_room(stack, room_b)) == 3


async def test_the_rate_limit_counts_every_session_of_a_token_together(
    stack: Stack, start_bridge: StartBridge, hooks: HookPoster
) -> None:
    desk_secret = "desk-shared-secret-0123456789"
    bridge = await start_bridge(
        hooks={"tokens": {"laptop": HOOK_TOKEN, "desk": {"secret": desk_secret}}},
        bridge={"control": {"handoffs_per_minute": 3, "handoff_max_waiting": 100}},
    )
    desk = HookPoster(f"http://{stack.config['hooks']['listen']}", desk_secret)
    try:
        a1, _, _ = await open_room(stack, bridge, hooks)
        a2, _, _ = await open_room(stack, bridge, hooks)
        b, _, _ = await open_room(stack, bridge, hooks)
        c, _, _ = await open_room(stack, bridge, hooks)
        d1, _, _ = await open_room(stack, bridge, desk)
        d2, _, _ = await open_room(stack, bridge, desk)
        for source, target in ((a1, b), (a2, c), (a1, c)):
            await post_hand_off(stack, source, target, f"{source} to {target}")
        status, answer, _ = await try_hand_off(stack, a2, b, "a fourth within the minute")
        assert status == 429, answer
        assert answer["error"].startswith("hand-off refused: the sessions of hook token 'laptop'")
        assert "handoffs_per_minute" in answer["error"]
        status, _, wait = await try_hand_off(stack, a1, c, "once more")
        assert status == 429 and 1 <= int(wait or 0) <= 60
        # Another token has a minute of its own.
        status, answer, _ = await try_hand_off(stack, d1, d2, "desk's own", desk_secret)
        assert status == 201, answer
        await processed(bridge, answer["event_id"])
        waiting = {t: [m[2] for m in await messages_of(bridge, t)] for t in (b, c)}
        assert waiting == {b: ["proposed"], c: ["proposed", "proposed"]}
    finally:
        await desk.close()


async def test_a_hand_off_nobody_decides_is_withdrawn_with_a_notice(
    stack: Stack, start_bridge: StartBridge, hooks: HookPoster
) -> None:
    bridge = await start_bridge(
        bridge={"control": {"handoff_expiry": 1.0, "handoff_max_waiting": 1}}
    )
    a, _, _ = await open_room(stack, bridge, hooks)
    b, room_b, ghost_b = await open_room(stack, bridge, hooks)
    alice = stack.users["alice"]
    posted = await post_hand_off(stack, a, b, "nobody answers this")
    await ghost_says(alice, room_b, ghost_b, posted["event_id"], "hand-off from another session")
    expired = await alice.wait_for(
        lambda e: (
            e["sender"] == ghost_b
            and replies_to(e) == posted["event_id"]
            and e["content"]["body"].startswith("⌛")
        ),
        room_id=room_b,
        timeout=WAIT,
    )
    assert "withdrawn" in expired["content"]["body"]
    assert expired["content"]["m.mentions"] == {}  # the operators were pinged once, not twice
    assert [m[2] for m in await messages_of(bridge, b)] == ["expired"]
    # A late ✅ is told; Claude never gets it; its place under the cap is free again.
    await alice.react(room_b, posted["event_id"], "✅")
    await ghost_says(alice, room_b, ghost_b, posted["event_id"], "already decided (expired)")
    assert await answer_to(hooks, pre_tool_use(b)) == {}
    again = await post_hand_off(stack, a, b, "a new one")
    assert again["delivery"] == "proposed"

    async def audited() -> list[str] | None:
        rows = await bridge.db.fetch(
            "SELECT actor, action FROM audit_log WHERE thread_id=$1 AND action LIKE 'handoff%' "
            "ORDER BY id",
            b.lower(),
        )
        actions = [f"{r['actor']} {r['action']}" for r in rows]
        return actions if len(actions) >= 2 else None

    found = await _until(audited, "the expiry audited", WAIT)
    assert found[:2] == [
        f"@claude-{a.lower()}:localhost handoff proposed",
        "bridge handoff expired",
    ]
