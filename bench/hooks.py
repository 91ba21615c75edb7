"""Hook acknowledgement (``POST /claude/v1/hooks`` → 200, durable) and the burst.

Acknowledgement is what Claude Code waits for on every hook. It is measured while the bridge is
also delivering what it acknowledged (as it always is in use): one session posting tool calls one
after another, and 50 sessions doing so at once.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from bench.mirroring import LiveSession, open_session, post_ok
from bench.payloads import Session, new_tag
from bench.stack import Stack
from bench.stats import latency_summary


async def open_quiet_sessions(stack: Stack, count: int, timeout: float) -> list[LiveSession]:
    """``count`` sessions with their rooms created (not joined by alice), outbox drained."""
    sessions = []
    for _ in range(count):
        session = Session(new_tag())
        conn = stack.hook_connection()
        await post_ok(conn, session.session_start())
        sessions.append(LiveSession(session, conn, ""))
    for live in sessions:
        room_id, _ = await stack.observer.wait_invite(live.session.alias_localpart, timeout)
        live.room_id = room_id
    await stack.drain(timeout)
    return sessions


async def acknowledgement(
    stack: Stack, sessions: list[LiveSession], per_session: int, rate: float | None = None
) -> dict[str, Any]:
    """Each session posts ``per_session`` events (tool call pairs), one at a time, all sessions
    at once. With ``rate`` (events/s per session) a session waits an exponentially distributed
    think time between its events, as a busy Claude Code session does (open load: the offered
    rate does not depend on how fast the bridge answers); without, each posts back to back (a
    closed loop that saturates the bridge: latency is then mostly queueing, the rate is its
    capacity). Returns the pooled per-request latency (client-side, keep-alive connections)."""
    latencies: list[float] = []
    rng = random.Random(len(sessions) * 7919 + per_session)

    async def worker(live: LiveSession) -> None:
        bodies: list[bytes] = []
        while len(bodies) < per_session:
            bodies.extend(body for body, _ in live.session.pair())
        if rate:
            await asyncio.sleep(rng.uniform(0, 1 / rate))
        for body in bodies[:per_session]:
            sent = time.perf_counter()
            _, took = await post_ok(live.conn, body)
            latencies.append(took * 1000)
            if rate:
                think = rng.expovariate(rate) - (time.perf_counter() - sent)
                if think > 0:
                    await asyncio.sleep(think)

    start = time.perf_counter()
    await asyncio.gather(*(worker(s) for s in sessions))
    elapsed = time.perf_counter() - start
    summary: dict[str, Any] = latency_summary(latencies)
    summary["rate"] = round(len(latencies) / elapsed, 1)
    return summary


async def burst(stack: Stack, n: int, timeout: float, window: int = 32) -> dict[str, Any]:
    """``n`` events of one session as fast as possible (pipelined on one connection, so the
    bridge sees them in order, back to back): the acknowledgement rate, then how long the room
    takes to catch up and how many Matrix messages it needed (coalescing makes fewer)."""
    live = await open_session(stack, join=True, timeout=timeout)
    try:
        events: list[tuple[bytes, str]] = []
        while len(events) < n:
            events.extend(live.session.pair())
        events = events[:n]
        # The last event must render on its own line so its arrival is visible.
        if not events[-1][1].endswith("-pre"):
            events[-1] = live.session.pre()
        marks = [m for _, m in events]
        before = stack.observer.events_per_room.get(live.room_id, 0)
        statuses, took, first, last_ack = await live.conn.pipeline(
            [b for b, _ in events], window=window
        )
        bad = [s for s in statuses if s != 200]
        if bad:
            raise RuntimeError(f"{len(bad)} of {n} burst events not acknowledged: {bad[:5]}")
        # Every event, not just the last: a merged message's thread replies follow it.
        last_seen = max([await stack.observer.wait_marker(m, timeout) for m in marks])
        await asyncio.sleep(0.5)  # let the last sync batch land before counting
        messages = stack.observer.events_per_room.get(live.room_id, 0) - before
        seen = stack.observer.count(marks)
        return {
            "n": n,
            "ack_rate": n / (last_ack - first),
            "ack_seconds": last_ack - first,
            "catch_up_lag_s": max(last_seen - last_ack, 0.0),
            "room_rate": n / (last_seen - first),
            "messages": messages,
            "markers_seen": seen,
            "ack_in_pipeline": latency_summary([t * 1000 for t in took]),
        }
    finally:
        await live.conn.close()


async def bridge_metrics(stack: Stack) -> str | None:
    """The bridge's ``GET /metrics`` text; None where this tree has no metrics endpoint."""
    from bench.httpclient import GetConnection
    from bench.stack import HOOK_TOKEN

    conn = GetConnection(stack.hook_host, stack.hook_port, HOOK_TOKEN)
    try:
        status, body, _ = await conn.get("/metrics")
    except (OSError, ValueError):
        return None
    finally:
        await conn.close()
    return body.decode(errors="replace") if status == 200 else None


async def ack_histogram(stack: Stack) -> dict[str, float] | None:
    """The bridge's own ``claude_bridge_hook_ack_seconds`` buckets (cumulative counts by upper
    bound), from ``GET /metrics``; None where this tree has no metrics endpoint."""
    text = await bridge_metrics(stack)
    if text is None:
        return None
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("claude_bridge_hook_ack_seconds_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[le] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("claude_bridge_hook_ack_seconds_count"):
            out["count"] = float(line.rsplit(" ", 1)[1])
    return out or None


async def gc_pauses(stack: Stack) -> dict[str, list[float]]:
    """The bridge's garbage collections so far, by generation: ``{"2": [count, seconds]}``,
    from ``claude_bridge_gc_pause_seconds``; empty where this tree does not export it."""
    text = await bridge_metrics(stack) or ""
    out: dict[str, list[float]] = {}
    for line in text.splitlines():
        for field, i in (("_count{", 0), ("_sum{", 1)):
            if line.startswith("claude_bridge_gc_pause_seconds" + field):
                gen = line.split('generation="', 1)[1].split('"', 1)[0]
                out.setdefault(gen, [0.0, 0.0])[i] = float(line.rsplit(" ", 1)[1])
    return out


def hist_delta(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, float]:
    """What the histogram counted between two snapshots (empty where either is missing)."""
    if not before or not after:
        return {}
    return {k: after[k] - before.get(k, 0.0) for k in after}


def add_hist(total: dict[str, float], delta: dict[str, float]) -> None:
    for k, v in delta.items():
        total[k] = total.get(k, 0.0) + v


def share(delta: dict[str, float], bounds_ms: tuple[float, ...] = (5, 1)) -> str:
    """'bridge's own histogram: 99.2% ≤ 5 ms, 97.0% ≤ 1 ms' from a :func:`hist_delta`, at the
    histogram's bucket bounds ``bounds_ms``."""
    n = delta.get("count", 0)
    if n <= 0:
        return ""
    parts = [
        f"{100 * delta[le] / n:.1f}% ≤ {ms:g} ms"
        for ms in bounds_ms
        if (le := f"{ms / 1000:g}") in delta
    ]
    return "bridge's own histogram: " + ", ".join(parts) if parts else ""


def server_share(before: dict[str, float] | None, after: dict[str, float] | None) -> str:
    """'bridge's own histogram: 99.2% ≤ 5 ms, 97.0% ≤ 1 ms' from two histogram snapshots."""
    return share(hist_delta(before, after))
