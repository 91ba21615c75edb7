"""Group commit on Postgres: hook INSERTs that arrive together share one commit.

Every hook acknowledgement waits for its row's commit, and on Postgres a commit is a round trip
and a WAL flush. Here an INSERT that arrives while fewer than ``depth`` statements are in flight
is sent at once, alone (no added wait); the ones that arrive while ``depth`` are in flight
queue, and when one returns they go out together, in arrival order, as one statement: one
transaction, one flush, up to ``max_rows`` rows or ``max_bytes`` of arguments (always at least
one row). Each caller is answered only after the commit its row was in, so durability is what
it was.

- Rows with the same first column (the thread) are never in flight at once: a row waits while
  an earlier one of its thread is, so a thread's ids rise in arrival order.
- A batch that the server refuses is retried row by row: only the row at fault fails, and its
  caller gets the server's error. A batch that loses its connection fails for each of its
  callers, as each one's own INSERT would have (nobody is told "stored" for a row that may not
  be; the hook answers 503 and the shim replays it under its idempotency key).
- The connections are pooled ones, held while there is work and ``LINGER`` seconds after: the
  pool resets a connection at every release, a second round trip that would otherwise sit on
  every acknowledgement's path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import asyncpg

MAX_ROWS = 64
MAX_BYTES = 1 << 20
DEPTH = 4
"""Statements in flight at most: beyond, rows wait and go out together."""
LINGER = 0.25
"""Seconds an idle writer keeps its connections (a busy session's next hook comes sooner)."""

Result = int | None | BaseException


@dataclass
class _Row:
    args: tuple[Any, ...]
    size: int
    done: asyncio.Future[int | None] = field(repr=False)

    @property
    def key(self) -> Any:
        return self.args[0]


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
        depth: int = DEPTH,
        linger: float = LINGER,
    ) -> None:
        self.pool = pool
        self.one = one
        self.many = many
        self.max_rows = max(1, max_rows)
        self.max_bytes = max_bytes
        self.depth = max(1, depth)
        self.linger = linger
        self.batches = 0
        """Statements sent (batches of one included): with the rows stored, the mean batch."""
        self.largest = 0
        self.most_in_flight = 0
        self._queue: deque[_Row] = deque()
        self._flying: Counter[Any] = Counter()  # keys (threads) of the rows in flight
        self._in_flight = 0
        self._idle: list[asyncpg.Connection] = []
        self._release: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def insert(self, *args: Any) -> int | None:
        """Store one row; returns its id once it is committed (None: not stored, as ``one``
        would have answered no row)."""
        row = _Row(args, sum(len(a) for a in args if isinstance(a, str)), _future())
        self._queue.append(row)
        if self._in_flight < self.depth and row.key not in self._flying:
            # Room in flight: this caller sends its batch now, on its own task (no hop).
            await self._commit(self._take())
        return await row.done

    async def close(self) -> None:
        """Wait for queued rows, then give the connections back."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))
        if self._release is not None:
            self._release.cancel()
            self._release = None
        await self._give_back()

    def _take(self) -> list[_Row]:
        """The next batch: queued rows in order, skipping those whose thread is in flight."""
        batch: list[_Row] = []
        size = 0
        kept: deque[_Row] = deque()
        while self._queue and len(batch) < self.max_rows:
            row = self._queue.popleft()
            if row.key in self._flying:
                kept.append(row)
                continue
            if batch and size + row.size > self.max_bytes:
                self._queue.appendleft(row)
                break
            batch.append(row)
            size += row.size
        self._queue.extendleft(reversed(kept))
        self._in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self._in_flight)
        self._flying.update(row.key for row in batch)
        return batch

    async def _commit(self, batch: list[_Row]) -> None:
        """Store ``batch``, send what can go next, then answer the batch's callers."""
        results: list[Result]
        try:
            results = await self._store(batch)
        except BaseException as e:  # cancelled included: every caller must be answered
            results = [e] * len(batch)
            if isinstance(e, asyncio.CancelledError):
                self._landed(batch)
                for row in batch:
                    if not row.done.done():
                        row.done.set_exception(ConnectionError("group commit interrupted"))
                raise
        # The next batch's statement goes out before this one's callers are woken.
        self._landed(batch)
        for row, result in zip(batch, results, strict=True):
            if row.done.done():
                continue
            if isinstance(result, BaseException):
                row.done.set_exception(result)
            else:
                row.done.set_result(result)

    def _landed(self, batch: list[_Row]) -> None:
        self._in_flight -= 1
        self._flying.subtract(row.key for row in batch)
        self._flying = +self._flying  # drop the zeros
        while self._in_flight < self.depth and any(r.key not in self._flying for r in self._queue):
            task = asyncio.create_task(self._commit(self._take()))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if not self._in_flight and self._idle and self._release is None:
            loop = asyncio.get_running_loop()
            self._release = loop.call_later(self.linger, self._release_idle)

    async def _store(self, batch: list[_Row]) -> list[Result]:
        conn = await self._connection()
        self.batches += 1
        self.largest = max(self.largest, len(batch))
        result: list[Result]
        try:
            if len(batch) == 1:
                result = [_id(await conn.fetchval(self.one, *batch[0].args))]
            else:
                columns = [list(c) for c in zip(*(row.args for row in batch), strict=True)]
                result = [_id(r[0]) for r in await conn.fetch(self.many, *columns)]
                if len(result) != len(batch):
                    raise RuntimeError(f"batch of {len(batch)} rows returned {len(result)} ids")
        except asyncpg.PostgresError as e:
            if not _usable(conn):  # e.g. the server ended the session: a batch-wide error
                self._drop(conn)
                return [e] * len(batch)
            if len(batch) == 1:
                self._idle.append(conn)
                return [e]
            # The statement stored nothing: each row alone, so only the one at fault fails.
            return await self._one_by_one(conn, batch)
        except BaseException:
            self._drop(conn)
            raise
        self._idle.append(conn)
        return result

    async def _one_by_one(self, conn: asyncpg.Connection, batch: list[_Row]) -> list[Result]:
        results: list[Result] = []
        for i, row in enumerate(batch):
            self.batches += 1
            try:
                results.append(_id(await conn.fetchval(self.one, *row.args)))
            except asyncpg.PostgresError as e:
                results.append(e)
            except BaseException as e:  # the connection went: the rest cannot be stored either
                self._drop(conn)
                if isinstance(e, asyncio.CancelledError):
                    raise
                return results + [e] * (len(batch) - i)
        self._idle.append(conn)
        return results

    async def _connection(self) -> asyncpg.Connection:
        if self._release is not None:
            self._release.cancel()
            self._release = None
        while self._idle:
            conn = self._idle.pop()
            if _usable(conn):
                return conn
            self._drop(conn)
        acquired: asyncpg.Connection = await self.pool.acquire()
        return acquired

    def _release_idle(self) -> None:
        self._release = None
        if not self._in_flight:
            task = asyncio.ensure_future(self._give_back())
            task.add_done_callback(_ignore_result)

    async def _give_back(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                await self.pool.release(conn)

    def _drop(self, conn: asyncpg.Connection) -> None:
        """After a connection error: back to the pool, which closes it if it is broken (its
        reset fails) and opens a new one when asked."""
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
