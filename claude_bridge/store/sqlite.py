"""The SQLite connection the pool builds, tuned for the hook path.

- Reads take one trip to aiosqlite's thread (mautrix's take three: execute, fetch, close).
- A batch of writes (:func:`claude_bridge.store.writes.write_atomically`) is one transaction in
  one trip: SQLite's write lock, which every hook acknowledgement needs, is then held while the
  statements run, not across event-loop turns and thread hand-offs (measured under delivery load,
  those turned 0.3 ms hook INSERTs into 3–20 ms ones, waiting in SQLite's busy handler).
- A statement that finds the write lock taken is retried every 50 µs–1 ms (:func:`_patiently`)
  instead of by SQLite's busy handler, which sleeps 1, 2, 5, 10… ms between looks: the bridge's
  writers hold the lock for a fraction of a millisecond, so a hook INSERT that met one waited
  3–5 ms for no reason. ``CONNECTION_PRAGMAS`` set ``busy_timeout = 0``: SQLite hands us the wait.
- Transactions begin ``IMMEDIATE``: with several connections a deferred transaction that reads
  before it writes fails at once ("database is locked") when another connection wrote between;
  taking the write lock first waits instead.

An in-process queue for the write lock was tried and measured worse: it is held from one hand-off
to the next, SQLite's own lock only while the statement runs.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from mautrix.util.async_db import aiosqlite as mautrix_sqlite

from claude_bridge.store.writes import Write

CONNECTION_PRAGMAS = (
    "busy_timeout = 0",  # waits for the write lock are ours (_patiently), not SQLite's sleeps
    "wal_autocheckpoint = 0",  # checkpoints run in the background (checkpoints.py)
    "foreign_keys = ON",
    # Before synchronous: a command that returns a row (this one) must not be the last one
    # mautrix's start-up runs on a connection; its cursor stays open and, on a new file,
    # locked the other connections out (seen: "database is locked" after 5 s).
    "journal_mode = WAL",
    "synchronous = NORMAL",
)
"""Set on every connection to the bridge's SQLite file, the pool's and the loop writer's."""

BUSY_TIMEOUT = 5.0
"""Longest wait for the write lock (what ``busy_timeout = 5000`` was)."""
_FIRST_PAUSE, _LONGEST_PAUSE = 0.00005, 0.001


@functools.lru_cache(maxsize=512)
def placeholders(query: str) -> str:
    """``$1`` → ``?1`` (the bridge's statements are a fixed set: converted once each)."""
    return mautrix_sqlite.POSITIONAL_PARAM_PATTERN.sub(r"?\1", query)


def busy(e: sqlite3.OperationalError) -> bool:
    return getattr(e, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY


def _patiently(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, retried while another connection holds the lock (in aiosqlite's thread).

    Safe to repeat: a busy statement did nothing. Only an autocommit statement or a
    ``BEGIN IMMEDIATE`` can be busy (inside an immediate transaction we hold the lock), and a
    write batch rolls back before it re-raises.
    """

    def run(*args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + BUSY_TIMEOUT
        pause = _FIRST_PAUSE
        while True:
            try:
                return fn(*args, **kwargs)
            except sqlite3.OperationalError as e:
                if not busy(e) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, _LONGEST_PAUSE)

    return run


class SQLiteConnection(mautrix_sqlite.TxnConnection):
    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # Every call aiosqlite runs in its thread passes here (statements, commits, cursors).
        return await super()._execute(_patiently(fn), *args, **kwargs)

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Any]:
        return list(await self.execute_fetchall(placeholders(query), args))

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any:
        rows = await self.fetch(query, *args)
        return rows[0] if rows else None

    async def write_batch(self, writes: Sequence[Write]) -> None:
        """All of ``writes`` in one transaction, in one trip to the connection's thread."""

        def run(raw: sqlite3.Connection) -> None:
            raw.execute("BEGIN IMMEDIATE")
            try:
                for write in writes:
                    if write.rows is None:
                        raw.execute(placeholders(write.sql), write.args)
                    else:
                        raw.executemany(placeholders(write.sql), write.rows)
            except BaseException:
                raw.execute("ROLLBACK")
                raise
            raw.execute("COMMIT")

        await self._execute(run, self._conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:  # type: ignore[override]
        if mautrix_sqlite.in_transaction.get():
            yield
            return
        await self.execute("BEGIN IMMEDIATE")
        token = mautrix_sqlite.in_transaction.set(True)
        try:
            yield
        except BaseException:
            await self.rollback()
            raise
        else:
            await self.commit()
        finally:
            mautrix_sqlite.in_transaction.reset(token)


def use_bridge_connections() -> None:
    """Make mautrix's SQLite pools build :class:`SQLiteConnection`; idempotent.

    mautrix's pool takes its connection class from the module attribute ``TxnConnection`` and
    has no parameter for it, so this swaps the attribute for the whole process. It is called
    where a database is created (``create_database``, ``doctor``), not at import: importing the
    store changes nothing.
    """
    mautrix_sqlite.TxnConnection = SQLiteConnection  # type: ignore[misc]
