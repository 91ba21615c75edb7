"""Several writes as one transaction, in as few trips as the store allows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from mautrix.util.async_db import Database
from mautrix.util.async_db import aiosqlite as mautrix_sqlite
from mautrix.util.async_db.connection import LoggingConnection


@dataclass(frozen=True)
class Write:
    """One statement; with ``rows``, run once per row of arguments (``executemany``)."""

    sql: str
    args: tuple[Any, ...] = ()
    rows: Sequence[Sequence[Any]] | None = None


@runtime_checkable
class BatchWriter(Protocol):
    """A connection that runs a whole batch in one trip (``store/sqlite.py``'s)."""

    async def write_batch(self, writes: Sequence[Write]) -> None: ...


async def write_atomically(db: Database, writes: Sequence[Write]) -> None:
    """Run ``writes`` in one transaction: on SQLite in one trip to the connection's thread (the
    write lock, which hook acknowledgements wait for, is held for the statements alone)."""
    conn: LoggingConnection
    async with db.acquire() as conn:
        wrapped: object = conn.wrapped
        if isinstance(wrapped, BatchWriter) and not mautrix_sqlite.in_transaction.get():
            await wrapped.write_batch(writes)
            return
        async with conn.transaction():
            for write in writes:
                if write.rows is None:
                    await conn.execute(write.sql, *write.args)
                else:
                    await conn.executemany(write.sql, write.rows)
