"""What a hook acknowledgement cannot go below, measured beside it in the same run.

An acknowledgement as the load generator sees it is the store's durable INSERT, the bridge's
HTTP and parsing, and the load generator's own delays (50 sessions share its one event loop, and
the machine's two cores are shared with Synapse). While the 50 sessions post, :class:`Floors`
measures the first and the last without the bridge, so what the bridge itself adds can be read
off the table:

- *the store's commit*: the same kind of row committed straight into the same kind of store, a
  few times a second. SQLite: a scratch file beside the bridge's (same disk), the bridge's
  connection pragmas, the INSERT run synchronously as the bridge runs it. Postgres: a scratch
  table in the bridge's database over its own connection, durable (``synchronous_commit`` as
  the server has it), a round trip awaited on the load generator's loop like a hook's.
- *the load generator's delay*: how late its event loop wakes a sleeper (a 10 ms tick), which
  every hook's measured latency also pays when its answer arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.stats import Row, latency_summary
from claude_bridge.store.sqlite import CONNECTION_PRAGMAS

_TABLE = (
    "CREATE TABLE IF NOT EXISTS bench_probe (id {id} PRIMARY KEY, thread_id TEXT NOT NULL, "
    "event_name TEXT NOT NULL, payload TEXT NOT NULL, received_at BIGINT NOT NULL)"
)
_INSERT = (
    "INSERT INTO bench_probe (thread_id, event_name, payload, received_at) "
    "VALUES ({p1}, {p2}, {p3}, {p4}) RETURNING id"
)
RATE = 20.0
"""Commits per second: a few more than one busy session, few enough not to load the store."""
TICK = 0.01


class Floors:
    def __init__(self, database_url: str, workdir: Path, payload: bytes) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.payload = payload.decode()
        self._sqlite: sqlite3.Connection | None = None
        self._pg: Any = None
        self.commits: list[float] = []
        self.delays: list[float] = []

    async def open(self) -> None:
        if self.database_url.startswith("postgres"):
            import asyncpg

            self._pg = await asyncpg.connect(
                self.database_url.replace("postgres://", "postgresql://")
            )
            await self._pg.execute(_TABLE.format(id="BIGSERIAL"))
        else:
            conn = sqlite3.connect(self.workdir / "probe.db", isolation_level=None)
            for pragma in CONNECTION_PRAGMAS:
                conn.execute(f"PRAGMA {pragma}")
            conn.execute(_TABLE.format(id="INTEGER"))
            self._sqlite = conn

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.execute("DROP TABLE IF EXISTS bench_probe")
            await self._pg.close()
            self._pg = None
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None

    async def commit_once(self) -> float:
        """One durable INSERT; its wall time in milliseconds."""
        args = ("probe", "PostToolUse", self.payload, int(time.time() * 1000))
        start = time.perf_counter()
        if self._pg is not None:
            await self._pg.fetchval(_INSERT.format(p1="$1", p2="$2", p3="$3", p4="$4"), *args)
        else:
            assert self._sqlite is not None
            self._sqlite.execute(_INSERT.format(p1="?", p2="?", p3="?", p4="?"), args).fetchall()
        return (time.perf_counter() - start) * 1000

    async def serial(self, n: int) -> dict[str, Any]:
        """``n`` durable INSERTs one after another, nothing else: the rate one connection of
        the bridge could reach if a request cost nothing but its commit."""
        took = []
        start = time.perf_counter()
        for _ in range(n):
            took.append(await self.commit_once())
        summary: dict[str, Any] = latency_summary(took)
        summary["rate"] = round(n / (time.perf_counter() - start), 1)
        return summary

    @contextlib.asynccontextmanager
    async def running(self, rate: float = RATE) -> AsyncIterator[None]:
        """Commit ``rate`` times a second and watch the loop's delay while the block runs."""

        async def commits() -> None:
            while True:
                self.commits.append(await self.commit_once())
                await asyncio.sleep(1 / rate)

        async def ticks() -> None:
            loop = asyncio.get_running_loop()
            while True:
                start = loop.time()
                await asyncio.sleep(TICK)
                self.delays.append((loop.time() - start - TICK) * 1000)

        tasks = [asyncio.create_task(commits()), asyncio.create_task(ticks())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def rows(self) -> list[Row]:
        """Reference rows, the samples of every repeat pooled."""
        commits, delays = latency_summary(self.commits), latency_summary(self.delays)
        return [
            Row(
                "ack.50.store.p99",
                "hook acknowledgement",
                "the store's own commit, same load, p99",
                commits["p99"],
                "ms",
                detail=commits,
                note=f"no bridge: a durable INSERT every {1000 / RATE:.0f} ms",
            ),
            Row(
                "ack.50.client.p99",
                "hook acknowledgement",
                "the load generator's own delay, same load, p99",
                delays["p99"],
                "ms",
                detail=delays,
                note=f"how late its event loop wakes a {TICK * 1000:.0f} ms sleeper",
            ),
        ]
