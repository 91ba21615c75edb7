"""The acknowledgement under real load (issue 17, 1b), with the load generator's own floor.

50 sessions each post a hook event, wait for the answer, think for a uniform 0–100 ms, and post
the next: about 1,000 events/s offered (500 tool calls/s), while the bridge delivers them into
the 50 rooms. Measured beside it, with the same shape and the same bodies:

- *the floor*: the same load against a do-nothing aiohttp server in its own process
  (``null_server.py``): what the load generator, the kernel and aiohttp cost, no store;
- *hook → room* during the load: one more session, joined by alice, posts a PreToolUse, waits
  until it is readable in alice's sync, and posts the next; beside it a raw-ceiling message is
  PUT straight to Synapse into a raw room the same way. Both meet the same loaded Synapse.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from bench.httpclient import HookConnection
from bench.mirroring import LiveSession, post_ok
from bench.stack import HOOK_TOKEN, REPO, Stack
from bench.stats import latency_summary
from claude_bridge.devenv.synapse import die_with_parent, free_port

SESSIONS = 50
THINK_MAX = 0.1
PROBE_PAUSE = 0.05


async def think_time_load(
    conns: list[HookConnection], bodies: list[list[bytes]], seed: int
) -> dict[str, Any]:
    """Connection i posts ``bodies[i]`` one at a time, thinking uniform(0, THINK_MAX) s before
    each. Returns the pooled acknowledgement latency (ms) and the rate achieved."""
    latencies: list[float] = []
    rng = random.Random(seed)

    async def session(conn: HookConnection, mine: list[bytes]) -> None:
        for body in mine:
            await asyncio.sleep(rng.uniform(0, THINK_MAX))
            _, took = await post_ok(conn, body)
            latencies.append(took * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(session(c, b) for c, b in zip(conns, bodies, strict=True)))
    summary: dict[str, Any] = latency_summary(latencies)
    summary["rate"] = round(len(latencies) / (time.perf_counter() - start), 1)
    return summary


def bodies_for(sessions: list[LiveSession], per_session: int) -> list[list[bytes]]:
    out = []
    for live in sessions:
        mine: list[bytes] = []
        while len(mine) < per_session:
            mine.extend(body for body, _ in live.session.pair())
        out.append(mine[:per_session])
    return out


def _spawn_null_server(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.null_server", str(port)],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent(),
    )


@contextlib.asynccontextmanager
async def null_server() -> AsyncIterator[int]:
    """The do-nothing server, running; yields its port."""
    port = free_port()
    proc = _spawn_null_server(port)
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        if b"ready" not in line:
            raise RuntimeError(f"null server did not start: {line!r}")
        for _ in range(200):  # listening once a connection is accepted
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.025)
        yield port
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait)


async def floor(port: int, bodies: list[list[bytes]], seed: int) -> dict[str, Any]:
    conns = [HookConnection("127.0.0.1", port, HOOK_TOKEN) for _ in bodies]
    try:
        return await think_time_load(conns, bodies, seed)
    finally:
        for conn in conns:
            await conn.close()


async def with_probes(
    stack: Stack, load: Any, probe: LiveSession, raw: Any, timeout: float
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Run ``load`` (a coroutine) while probing hook → room (the probe session's PreToolUse:
    POST → readable) and raw send → readable (a PUT straight to Synapse), side by side.

    Each prober waits for its message to be readable before the next (then ``PROBE_PAUSE``), so
    every probe meets an idle thread, like the idle row: posted faster than the loaded Synapse
    answers, a thread's messages would queue behind each other (a room's messages are sent in
    order, one at a time) and the row would measure that queue, not what the bridge adds to
    one message. Returns (load result, hook → room summary, raw summary)."""
    hook_ms: list[float] = []
    raw_ms: list[float] = []
    contents, marks = raw.contents(1000)
    done = asyncio.Event()

    async def seen(mark: str, start: float, out: list[float]) -> None:
        out.append((await stack.observer.wait_marker(mark, timeout) - start) * 1000)

    async def hook_probes() -> None:
        while not done.is_set():
            body, mark = probe.session.pre()
            start = time.perf_counter()
            await post_ok(probe.conn, body)
            await seen(mark, start, hook_ms)
            await asyncio.sleep(PROBE_PAUSE)

    async def raw_probes() -> None:
        for content, mark in zip(contents, marks, strict=True):
            if done.is_set():
                break
            start = time.perf_counter()
            await raw.put(raw.rooms[0], content)
            await seen(mark, start, raw_ms)
            await asyncio.sleep(PROBE_PAUSE)

    probers = [asyncio.create_task(hook_probes()), asyncio.create_task(raw_probes())]
    try:
        result = await load
    finally:
        done.set()
        await asyncio.gather(*probers)
    return result, latency_summary(hook_ms), latency_summary(raw_ms)


async def null_burst(port: int, bodies: list[bytes], window: int = 32) -> dict[str, Any]:
    """The burst's floor: the same bodies pipelined on one connection to the do-nothing server.
    aiohttp handles one connection's requests one after another, so this rate is one over
    aiohttp's own cost per request (plus this client's), whatever the bridge does."""
    conn = HookConnection("127.0.0.1", port, HOOK_TOKEN)
    try:
        statuses, took, first, last = await conn.pipeline(bodies, window=window)
    finally:
        await conn.close()
    if any(s != 200 for s in statuses):
        raise RuntimeError(f"the null server answered {sorted(set(statuses))}")
    one_by_one = HookConnection("127.0.0.1", port, HOOK_TOKEN)
    try:
        start = time.perf_counter()
        for body in bodies[: len(bodies) // 4]:
            await post_ok(one_by_one, body)
        sequential = len(bodies) // 4 / (time.perf_counter() - start)
    finally:
        await one_by_one.close()
    return {
        "n": len(bodies),
        "ack_rate": round(len(bodies) / (last - first), 1),
        "sequential_rate": round(sequential, 1),
        "ack_in_pipeline": latency_summary([t * 1000 for t in took]),
    }
