"""Group commit on Postgres: hook INSERTs that arrive together share one commit.

Every hook acknowledgement waits for its row's commit, and on Postgres a commit is a round trip
and a WAL flush. Here the first INSERT to arrive is sent at once, alone (no added wait); the
ones that arrive while it is in flight queue, and when it returns they go out together, in
arrival order, as one statement: one transaction, one flush, up to ``max_rows`` rows or
``max_bytes`` of arguments (always at least one row). Each caller is answered only after the
commit its row was in, so durability is what it was.

- One batch is in flight at a time, so ids rise in arrival order (a thread's events keep their
  order even if a caller sends two of one thread without waiting).
- A batch that the server refuses is retried row by row: only the row at fault fails, and its
  caller gets the server's error. A batch that loses its connection fails for each of its
  callers, as each one's own INSERT would have (nobody is told "stored" for a row that may not
  be; the hook answers 503 and the shim replays it, ``maybe-delivered``).
- The connection is a pooled one, held while there is work and ``LINGER`` seconds after: the
  pool resets a connection on every release, a second round trip that would otherwise sit on
  every acknowledgement's path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import asyncpg

MAX_ROWS = 64
MAX_BYTES = 1 << 20
LINGER = 0.25
"""Seconds an idle writer keeps its connection (a busy session's next hook comes sooner)."""


Result = int | None | BaseException


@dataclass
class _Row:
    args: tuple[Any, ...]
    size: int
    done: asyncio.Future[int | None] = field(repr=False)


class GroupCommit:
    """Runs ``one`` (a single-row ``INSERT … RETURNING id``) for each caller of :meth:`insert`,
    batching callers who wait at the same time into ``many``: the same INSERT over one array
    per column (``$1`` … ``$k``), returning one row per array element, in order, with the id
    (NULL where ``one`` would have returned no row, e.g. ``ON CONFLICT DO NOTHING``)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        one: str,
        many: str,
        *,
        max_rows: int = MAX_ROWS,
        max_bytes: int = MAX_BYTES,
        linger: float = LINGER,
    ) -> None:
        self.pool = pool
        self.one = one
        self.many = many
        self.max_rows = max(1, max_rows)
        self.max_bytes = max_bytes
        self.linger = linger
        self.batches = 0
        """Statements sent (batches of one included): with the rows stored, the mean batch."""
        self.largest = 0
        self._queue: deque[_Row] = deque()
        self._busy = False
        self._conn: asyncpg.Connection | None = None
        self._release: asyncio.TimerHandle | None = None
        self._next: asyncio.Task[None] | None = None

    async def insert(self, *args: Any) -> int | None:
        """Store one row; returns its id once it is committed (None: not stored, as ``one``
        would have answered no row)."""
        row = _Row(args, sum(len(a) for a in args if isinstance(a, str)), _future())
        self._queue.append(row)
        if not self._busy:
            # Nothing in flight: this caller sends its own batch now, on its own task.
            self._busy = True
            await self._commit(self._take())
        return await row.done

    async def close(self) -> None:
        """Wait for queued rows, then give the connection back."""
        while self._next is not None and not self._next.done():
            await asyncio.wait([self._next])
        if self._release is not None:
            self._release.cancel()
            self._release = None
        await self._give_back()

    def _take(self) -> list[_Row]:
        batch = [self._queue.popleft()]
        size = batch[0].size
        while self._queue and len(batch) < self.max_rows:
            size += self._queue[0].size
            if size > self.max_bytes:
                break
            batch.append(self._queue.popleft())
        return batch

    async def _commit(self, batch: list[_Row]) -> None:
        """Store ``batch``, hand the queue on, then answer the batch's callers."""
        results: list[Result]
        try:
            results = await self._store(batch)
        except BaseException as e:  # cancelled included: every caller must be answered
            results = [e] * len(batch)
            if isinstance(e, asyncio.CancelledError):
                self._hand_on()
                for row in batch:
                    if not row.done.done():
                        row.done.set_exception(ConnectionError("group commit interrupted"))
                raise
        # The next batch's statement goes out before this one's callers are woken.
        self._hand_on()
        for row, result in zip(batch, results, strict=True):
            if row.done.done():
                continue
            if isinstance(result, BaseException):
                row.done.set_exception(result)
            else:
                row.done.set_result(result)

    def _hand_on(self) -> None:
        if self._queue:
            self._next = asyncio.create_task(self._commit(self._take()))
            return
        self._busy = False
        self._next = None
        if self._conn is not None and self._release is None:
            loop = asyncio.get_running_loop()
            self._release = loop.call_later(self.linger, self._release_idle)

    async def _store(self, batch: list[_Row]) -> list[Result]:
        conn = await self._connection()
        self.batches += 1
        self.largest = max(self.largest, len(batch))
        try:
            if len(batch) == 1:
                return [_id(await conn.fetchval(self.one, *batch[0].args))]
            columns = [list(column) for column in zip(*(row.args for row in batch), strict=True)]
            ids: list[Result] = [_id(r[0]) for r in await conn.fetch(self.many, *columns)]
            if len(ids) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} rows returned {len(ids)} ids")
            return ids
        except asyncpg.PostgresError as e:
            if not _usable(conn):  # e.g. the server ended the session: a batch-wide error
                self._drop_connection()
                return [e] * len(batch)
            if len(batch) == 1:
                return [e]
            # The statement stored nothing: each row alone, so only the one at fault fails.
            return await self._one_by_one(conn, batch)
        except BaseException:
            self._drop_connection()
            raise

    async def _one_by_one(self, conn: asyncpg.Connection, batch: list[_Row]) -> list[Result]:
        results: list[Result] = []
        for i, row in enumerate(batch):
            self.batches += 1
            try:
                results.append(_id(await conn.fetchval(self.one, *row.args)))
            except asyncpg.PostgresError as e:
                results.append(e)
            except BaseException as e:  # the connection went: the rest cannot be stored either
                self._drop_connection()
                if isinstance(e, asyncio.CancelledError):
                    raise
                return results + [e] * (len(batch) - i)
        return results

    async def _connection(self) -> asyncpg.Connection:
        if self._release is not None:
            self._release.cancel()
            self._release = None
        if self._conn is not None and not _usable(self._conn):
            self._drop_connection()
        if self._conn is None:
            self._conn = await self.pool.acquire()
        return self._conn

    def _release_idle(self) -> None:
        self._release = None
        if not self._busy:
            task = asyncio.ensure_future(self._give_back())
            task.add_done_callback(_ignore_result)

    async def _give_back(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await self.pool.release(conn)

    def _drop_connection(self) -> None:
        """After a connection error: back to the pool, which closes it if it is broken (its
        reset fails) and opens a new one when asked; the next batch acquires again."""
        conn, self._conn = self._conn, None
        if conn is not None:
            task = asyncio.ensure_future(self.pool.release(conn))
            task.add_done_callback(_ignore_result)


def _usable(conn: asyncpg.Connection) -> bool:
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:  # the pool took it back when it was lost
        return False


def _id(value: Any) -> int | None:
    return None if value is None else int(value)


def _future() -> asyncio.Future[int | None]:
    return asyncio.get_running_loop().create_future()


def _ignore_result(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
