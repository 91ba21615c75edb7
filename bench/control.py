"""Matrix → Claude: an operator's message, sent in the thread room, comes back to Claude Code in
the next hook answer (``hookSpecificOutput.additionalContext`` of a PreToolUse/PostToolUse).

alice (an operator in ``bridge.permissions``) sends a text; the session keeps calling tools,
posting a PostToolUse every few milliseconds, until an answer carries the text. Two latencies:
from alice's send returning, and from the moment the bridge stored Synapse's transaction
(``matrix_event.received_at``) — the target is on the second.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from bench.mirroring import open_session, post_ok
from bench.stack import Stack
from bench.stats import latency_summary

POLL = 0.005
APP = Path(__file__).resolve().parents[1] / "claude_bridge" / "app.py"


def responder_wired() -> bool:
    """Whether this tree hands hook answers to the Matrix→Claude responder at all."""
    try:
        text = APP.read_text()
    except OSError:
        return False
    return "Responder" in text or "respond=" in text


def _context(answer: bytes) -> str:
    try:
        data = json.loads(answer)
    except ValueError:
        return ""
    out = data.get("hookSpecificOutput") if isinstance(data, dict) else None
    ctx = out.get("additionalContext") if isinstance(out, dict) else None
    return ctx if isinstance(ctx, str) else ""


async def matrix_to_claude(stack: Stack, k: int, timeout: float) -> dict[str, Any]:
    live = await open_session(stack, join=True, timeout=timeout)
    db = await stack.db()
    from_send, from_txn, polls = [], [], []
    try:
        body, _ = live.session.pre()
        await post_ok(live.conn, body)  # mid-turn: Claude is calling tools
        for i in range(k):
            mark = live.session.marker(i, "say")
            event_id = await stack.alice.send_text(live.room_id, f"please also check {mark}")
            sent = time.perf_counter()
            deadline = sent + (5.0 if i == 0 else 2.0)
            found_at = None
            tries = 0
            while time.perf_counter() < deadline:
                n = 10_000 + i * 1000 + tries
                answer, _ = await post_ok(live.conn, live.session.post(n)[0])
                tries += 1
                if mark in _context(answer):
                    found_at = time.perf_counter()
                    wall_ms = time.time() * 1000
                    break
                await asyncio.sleep(POLL)
            if found_at is None:
                if i == 0:
                    return {"implemented": responder_wired(), "timeout": True}
                raise TimeoutError(f"message {i} not in any hook answer within 2 s")
            polls.append(tries)
            from_send.append((found_at - sent) * 1000)
            stored = await db.fetchval(
                "SELECT received_at FROM matrix_event WHERE event_id=$1", event_id
            )
            if stored is not None:
                from_txn.append(max(wall_ms - float(stored), 0.0))
            await asyncio.sleep(0.05)
        await stack.drain(timeout)
    finally:
        await live.conn.close()
    return {
        "implemented": True,
        "timeout": False,
        "from_txn": latency_summary(from_txn) if from_txn else None,
        "from_send": latency_summary(from_send),
        "polls_per_sample": latency_summary(polls),
    }
