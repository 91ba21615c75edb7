"""Hook → room through the bridge: idle latency, sustained rate, thread creation.

Each bridge measurement has a raw-ceiling twin in ``raw.py`` with the same shape and content;
``__main__`` runs them alternately so both see the same machine.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from bench.httpclient import HookConnection
from bench.payloads import Session, new_tag
from bench.stack import Stack
from bench.stats import latency_summary


class HookFailed(Exception):
    pass


async def post_ok(conn: HookConnection, body: bytes) -> tuple[bytes, float]:
    status, answer, took = await conn.post(body)
    if status != 200:
        raise HookFailed(f"hook POST answered {status}: {answer[:200]!r}")
    return answer, took


@dataclass
class LiveSession:
    session: Session
    conn: HookConnection
    room_id: str


async def open_session(stack: Stack, *, join: bool = True, timeout: float = 60) -> LiveSession:
    """A session whose room exists (and which alice has joined), with nothing left to deliver."""
    session = Session(new_tag())
    conn = stack.hook_connection()
    await post_ok(conn, session.session_start())
    await post_ok(conn, session.prompt())
    room_id, _ = await stack.observer.wait_invite(session.alias_localpart, timeout)
    if join:
        await stack.alice.join(room_id)
    await stack.drain(timeout)
    return LiveSession(session, conn, room_id)


async def close_sessions(sessions: list[LiveSession]) -> None:
    for s in sessions:
        await s.conn.close()


async def hook_to_room(
    stack: Stack, live: LiveSession, k: int, timeout: float, pause: float = 0.03
) -> dict[str, Any]:
    """Idle: one PreToolUse at a time, POST → the line readable by the syncing user."""
    seen_ms, ack_ms = [], []
    for _ in range(k):
        body, mark = live.session.pre()
        start = time.perf_counter()
        _, took = await post_ok(live.conn, body)
        seen = await stack.observer.wait_marker(mark, timeout)
        seen_ms.append((seen - start) * 1000)
        ack_ms.append(took * 1000)
        await asyncio.sleep(pause)
    return {"seen": latency_summary(seen_ms), "ack": latency_summary(ack_ms)}


async def sustained(
    stack: Stack, sessions: list[LiveSession], n: int, timeout: float
) -> dict[str, float]:
    """``n`` PreToolUse events spread over the sessions (each posting its share in order, as
    fast as the bridge acknowledges): hook events/s until the last is readable in every room."""
    per = n // len(sessions)
    work = []
    for live in sessions:
        events = [live.session.pre() for _ in range(per)]
        work.append((live, [b for b, _ in events], events[-1][1]))

    async def poster(live: LiveSession, bodies: list[bytes]) -> float:
        for body in bodies:
            await post_ok(live.conn, body)
        return time.perf_counter()

    def messages() -> int:
        return sum(stack.observer.events_per_room.get(live.room_id, 0) for live in sessions)

    before = messages()
    start = time.perf_counter()
    acked = await asyncio.gather(*(poster(live, bodies) for live, bodies, _ in work))
    acked_all = max(acked)
    seen = [await stack.observer.wait_marker(last, timeout) for _, _, last in work]
    total = per * len(sessions)
    return {
        "n": total,
        "rate": total / (max(*seen, acked_all) - start),
        "ack_rate": total / (acked_all - start),
        # > 1 when coalescing merged queued lines (the raw side sends one message per event)
        "events_per_message": round(total / max(messages() - before, 1), 2),
    }


async def thread_creation(
    stack: Stack, k: int, timeout: float, pause: float = 0.05
) -> dict[str, Any]:
    """First hook of a new session (SessionStart) → the room exists with the ghost in it and the
    operators invited, i.e. alice's sync shows the invite to ``#claude-thread-<session>``."""
    seen_ms, ack_ms = [], []
    conn = stack.hook_connection()
    try:
        for _ in range(k):
            session = Session(new_tag())
            start = time.perf_counter()
            _, took = await post_ok(conn, session.session_start())
            _, invited = await stack.observer.wait_invite(session.alias_localpart, timeout)
            seen_ms.append((invited - start) * 1000)
            ack_ms.append(took * 1000)
            await stack.drain(timeout)
            await asyncio.sleep(pause)
    finally:
        await conn.close()
    return {"invite_seen": latency_summary(seen_ms), "ack": latency_summary(ack_ms)}
