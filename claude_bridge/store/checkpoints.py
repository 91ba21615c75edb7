"""SQLite WAL checkpoints, run in the background instead of by whichever write crosses the line.

By default SQLite checkpoints when a commit leaves more than 1,000 pages in the WAL, on that
commit's connection. Under load that was a hook INSERT about one time in two hundred: it copied
4 MB into the database file and synced it before Claude Code got its answer (4–8 ms instead of
0.3). Every connection turns automatic checkpoints off (``sqlite.CONNECTION_PRAGMAS``) and this
task checkpoints every ``interval`` seconds on a pooled connection. ``PASSIVE`` waits for no
reader or writer, so hooks never wait for it; the WAL stays about one interval of writes long.
"""

from __future__ import annotations

import asyncio
import contextlib

from mautrix.util.async_db import Database, Scheme

from claude_bridge.log import get_logger

log = get_logger("checkpoints")

INTERVAL = 1.0


class WalCheckpoints:
    def __init__(self, db: Database, interval: float = INTERVAL) -> None:
        self.db = db
        self.interval = interval
        self.done = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.db.scheme == Scheme.SQLITE:
            self._task = asyncio.create_task(self._run(), name="wal-checkpoints")

    async def checkpoint(self) -> None:
        await self.db.fetchrow("PRAGMA wal_checkpoint(PASSIVE)")
        self.done += 1

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.checkpoint()
            except Exception as e:  # the database is away: the next round tries again
                log.warning("WAL checkpoint failed", error=repr(e))

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        with contextlib.suppress(Exception):
            await self.checkpoint()  # leave a short WAL behind
