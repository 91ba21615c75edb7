"""How cost grows (issue 17, §3): ``python -m bench run --only curves``.

Three curves, each point measured in the same run, and a PNG of them (with matplotlib, the
optional ``bench`` extra; without it the JSON still has every point):

- the acknowledgement of an event routed to an existing thread (a PostToolBatch: stored, not
  mirrored), p50 and p99, and listing threads, against the threads in the store: 1k, 10k, 100k
  (seeded as ``scale`` seeds them);
- delivery throughput (PreToolUse events until readable in alice's sync) against the rooms
  being written to at once: 1, 10, 100 sessions with rooms alice joined;
- the bridge's RSS against held connections (background waiters' long-polls from
  ``hold_client.py``): 1k, 5k, 10k.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from bench import hold, scale
from bench.mirroring import LiveSession, close_sessions, open_session, sustained
from bench.payloads import Session
from bench.stack import Stack, proc_status
from bench.stats import Row

STORE_SIZES = [1_000, 10_000, 100_000]
ROOMS = [1, 10, 100]
HELD = [1_000, 5_000, 10_000]
ROUTED = 500  # events per store size, each to a different seeded thread
EVENTS_PER_ROOM = 20


async def run(stack: Stack, wait: float, png: Path) -> tuple[list[Row], dict[str, Any]]:
    raw: dict[str, Any] = {"store": [], "rooms": [], "held": []}
    db = await stack.db()
    seeded: list[Session] = []
    for size in STORE_SIZES:
        have = int(await db.fetchval("SELECT COUNT(*) FROM thread"))
        if size > have:
            more, _ = await scale.seed_threads(stack, size - have)
            seeded += more
        routed = await scale.route(stack, random.Random(size).sample(seeded, ROUTED))
        listed = await scale.list_threads(stack, 20)
        await stack.drain(wait)
        threads = int(await db.fetchval("SELECT COUNT(*) FROM thread"))
        raw["store"].append({"threads": threads, "ack": routed, "list": listed})
    live: list[LiveSession] = []
    try:
        for rooms in ROOMS:
            while len(live) < rooms:
                live.append(await open_session(stack, join=True, timeout=wait))
            await stack.drain(wait)
            result = await sustained(stack, live[:rooms], EVENTS_PER_ROOM * rooms, wait * 2)
            raw["rooms"].append({"rooms": rooms, **result})
    finally:
        await close_sessions(live)
    sessions = [s.session_id for s in seeded]
    for held in HELD:
        waits = [f"/claude/v1/sessions/{sid}/wait?timeout=600&since=1" for sid in sessions[:held]]
        gen = hold.LoadGenerator(stack, {"waits": waits, "posts": []}, stack.workdir)
        try:
            ready = await gen.start(wait * 3)
            await hold.settle(stack, wait)
            status = proc_status(stack.bridge_pid)
            raw["held"].append({"held": held, "rss_mb": round(status["VmRSS"] / 1024, 1),
                                "fds": hold.fd_count(stack.bridge_pid), "client": ready})  # fmt: skip
        finally:
            await gen.stop()
        await hold.settle(stack, wait)
    raw["png"] = plot(raw, png)
    return rows(raw), raw


def rows(raw: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for point in raw["store"]:
        n, ack = point["threads"], point["ack"]
        out.append(Row(f"curves.store.{n}", "cost curves", f"{n:,} threads: routed event ack, p99",
                       ack["p99"], "ms", status="info", detail=point,
                       note=f"p50 {ack['p50']} ms; list threads p50 {point['list'].get('p50')} ms"))  # fmt: skip
    for point in raw["rooms"]:
        k = point["rooms"]
        out.append(Row(f"curves.rooms.{k}", "cost curves", f"{k} rooms at once: delivery",
                       round(point["rate"], 1), "ev/s", status="info", better="higher",
                       detail=point, note=f"{point['events_per_message']} events per message"))  # fmt: skip
    for point in raw["held"]:
        h = point["held"]
        out.append(Row(f"curves.held.{h}", "cost curves", f"{h:,} waiters held: bridge RSS",
                       point["rss_mb"], "MB", status="info", detail=point,
                       note=f"{point['fds']} descriptors"))  # fmt: skip
    return out


def plot(raw: dict[str, Any], png: Path) -> str | None:
    """The three curves side by side; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(13, 4))
    xs = [p["threads"] for p in raw["store"]]
    a.plot(xs, [p["ack"]["p50"] for p in raw["store"]], "o-", label="ack p50")
    a.plot(xs, [p["ack"]["p99"] for p in raw["store"]], "o-", label="ack p99")
    a.plot(xs, [p["list"].get("p50") for p in raw["store"]], "o--", label="list threads p50")
    a.set(xscale="log", xlabel="threads in the store", ylabel="ms", title="routing an event")
    a.legend()
    xs = [p["rooms"] for p in raw["rooms"]]
    b.plot(xs, [p["rate"] for p in raw["rooms"]], "o-", label="events/s readable")
    b.set(xscale="log", xlabel="rooms written at once", ylabel="events/s", title="delivery")
    b.set_ylim(bottom=0)
    b.legend()
    xs = [p["held"] for p in raw["held"]]
    c.plot(xs, [p["rss_mb"] for p in raw["held"]], "o-", label="bridge RSS")
    c.set(xlabel="waiters held", ylabel="MB", title="memory")
    c.set_ylim(bottom=0)
    c.legend()
    fig.suptitle(f"claude-bridge cost curves ({time.strftime('%Y-%m-%d')})")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return str(png)
