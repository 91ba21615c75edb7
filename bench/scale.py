"""Scale: 10,000 threads in the database. Listing them over REST, routing an event to an
existing one, and the bridge's memory afterwards.

Threads are seeded straight into the bridge's database (rows shaped by ``store.Thread``, one
``executemany``) with room ids of their own, so routing an event to one touches no homeserver:
the event is a PostToolBatch, which is stored, acknowledged and delivered like any other but not
mirrored by default. Routing is measured cold (the first event of each seeded thread since the
bridge started: its thread must come from the database) and warm (a second event).
"""

from __future__ import annotations

import dataclasses
import random
import secrets
import time
import uuid
from typing import Any

from bench.httpclient import GetConnection
from bench.payloads import Session
from bench.stack import HOOK_TOKEN, Stack, proc_status
from bench.stats import latency_summary
from claude_bridge.room_state import WORKING
from claude_bridge.store import Thread, now_ms


async def seed_threads(stack: Stack, count: int) -> tuple[list[Session], float]:
    """Insert ``count`` threads; returns their sessions and the seconds the insert took."""
    tag = secrets.token_hex(3)
    now = now_ms()
    sessions, rows = [], []
    columns = [f.name for f in dataclasses.fields(Thread)]
    for i in range(count):
        session = Session(f"bmseed{tag}-{i}")
        session.session_id = str(uuid.uuid4())
        sessions.append(session)
        thread = Thread(
            id=session.session_id,  # type: ignore[arg-type]  # UUIDs are their own thread id
            session_id=session.session_id,  # type: ignore[arg-type]
            ghost_mxid=f"@claude-{session.session_id}:{stack.domain}",
            alias=f"#claude-thread-{session.session_id}:{stack.domain}",
            room_id=f"!seed{tag}{i}:{stack.domain}",
            project_path=f"/home/dev/projects/seed-{i % 50}",
            project_name=f"seed-{i % 50}",
            title=f"seeded thread {i}",
            token_name="bench",
            status="active" if i % 3 else "ended",
            created_at=now - (count - i) * 1000,
            updated_at=now - (count - i) * 1000,
            space_linked_at=now - (count - i) * 1000,  # as a room that was made then
            # Where a routed tool call leaves the session: its room needs no new topic (the
            # seeded rooms do not exist in Synapse, so a topic change would be refused).
            activity=WORKING,
        )
        rows.append(tuple(getattr(thread, c) for c in columns))
    placeholders = ",".join(f"${i + 1}" for i in range(len(columns)))
    query = f"INSERT INTO thread ({', '.join(columns)}) VALUES ({placeholders})"
    db = await stack.db()
    start = time.perf_counter()
    async with db.acquire() as conn, conn.transaction():
        await conn.executemany(query, rows)
    return sessions, time.perf_counter() - start


async def route(stack: Stack, sessions: list[Session]) -> dict[str, Any]:
    """One PostToolBatch to each session, one after another; per-request ack latency."""
    conn = stack.hook_connection()
    latencies = []
    bodies = [s.batch_event() for s in sessions]
    try:
        for body in bodies:
            status, answer, took = await conn.post(body)
            if status != 200:
                raise RuntimeError(f"routing POST answered {status}: {answer[:200]!r}")
            latencies.append(took * 1000)
    finally:
        await conn.close()
    return latency_summary(latencies)


async def route_cold_and_warm(
    stack: Stack, sessions: list[Session], cold: int, warm: int
) -> dict[str, Any]:
    picked = random.sample(sessions, min(cold, len(sessions)))
    cold_summary = await route(stack, picked)
    warm_summary = await route(stack, random.choices(picked, k=warm))
    return {"cold": cold_summary, "warm": warm_summary}


async def list_threads(stack: Stack, k: int) -> dict[str, Any]:
    """``GET /claude/v1/threads`` (the default page), ``k`` times on one keep-alive connection."""
    conn = GetConnection(stack.hook_host, stack.hook_port, HOOK_TOKEN)
    latencies = []
    try:
        status, body, _ = await conn.get("/claude/v1/threads")
        if status == 404:
            return {"implemented": False}
        if status != 200:
            raise RuntimeError(f"GET /claude/v1/threads answered {status}: {body[:200]!r}")
        size = len(body)
        for _ in range(k):
            status, body, took = await conn.get("/claude/v1/threads")
            if status != 200:
                raise RuntimeError(f"GET /claude/v1/threads answered {status}")
            latencies.append(took * 1000)
    finally:
        await conn.close()
    out: dict[str, Any] = {"implemented": True, "bytes": size}
    out.update(latency_summary(latencies))
    return out


def memory(stack: Stack) -> dict[str, float]:
    status = proc_status(stack.bridge_pid)
    return {"rss_mb": status.get("VmRSS", 0) / 1024, "hwm_mb": status.get("VmHWM", 0) / 1024}
