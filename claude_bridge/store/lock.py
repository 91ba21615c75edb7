"""One active bridge per database: the leader lock.

Two bridges delivering one outbox would race each other over every event. So a bridge takes this
lock before it touches the schema or listens anywhere; a second process started on the same
database waits (a standby) and takes over within one poll when the holder dies:

- Postgres: a session-level advisory lock (``pg_try_advisory_lock``) on a connection of its own,
  held for the life of the process. Postgres drops it when that session ends (the process died,
  or the connection broke). The holder's ``application_name`` names its pid and host, so a
  waiting process can say whom it waits for. Advisory locks are per database, so bridges on other
  databases of the same server do not see each other.
- SQLite: ``flock`` on ``<database>.lock``, released by the kernel when the process dies. The file
  holds the holder's pid and host.

The Postgres lock goes with its connection (a database restart ends every session). The holder
then takes it back as soon as the database answers; if another process got it first, ``lost`` is
set and the bridge stops, so two processes never stay active together.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
from typing import Any

import asyncpg
from yarl import URL

from claude_bridge.log import get_logger

log = get_logger("lock")

POLL_INTERVAL = 0.5
"""How often a standby (or a holder whose connection broke) tries the lock."""
HEARTBEAT = 10.0
"""How often the Postgres holder checks its connection when nothing else says it broke."""
# "claude-b" as a big-endian int64: a constant key that no other program is likely to use.
ADVISORY_KEY = 0x636C617564652D62


def identity() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


class LeaderLock:
    """Held by at most one process per database; ``acquire()`` waits for it."""

    def __init__(self, poll_interval: float = POLL_INTERVAL) -> None:
        self.poll_interval = poll_interval
        self.held = False
        self.lost = asyncio.Event()
        """Set when the lock went to another process: this one must stop working."""

    async def acquire(self) -> None:
        """Wait until this process holds the lock.

        The first attempt raises if the database cannot be reached at all (a broken config should
        fail at start); later ones retry, since a standby outlives database restarts.
        """
        first = True
        announced: str | None = None
        while True:
            try:
                got = await self._try()
            except Exception as e:
                if first:
                    raise
                log.warning("leader lock: database unreachable, retrying", error=repr(e))
                got = False
            first = False
            if got:
                self.held = True
                log.info("leader lock taken: this process is the active bridge", lock=str(self))
                await self._on_acquired()
                return
            holder = await self._holder()
            if holder != announced:
                log.info(f"waiting for the lock held by {holder}", holder=holder, lock=str(self))
                announced = holder
            await asyncio.sleep(self.poll_interval)

    async def release(self) -> None:
        """Give the lock up (idempotent); a standby takes it within one poll."""
        self.held = False

    async def _try(self) -> bool:
        raise NotImplementedError

    async def _holder(self) -> str:
        return "another process"

    async def _on_acquired(self) -> None:
        pass


class NoLock(LeaderLock):
    """An in-memory SQLite database cannot be shared: nothing to lock."""

    async def _try(self) -> bool:
        return True

    def __str__(self) -> str:
        return "none (in-memory database)"


class FileLock(LeaderLock):
    def __init__(self, path: str, poll_interval: float = POLL_INTERVAL) -> None:
        super().__init__(poll_interval)
        self.path = path
        self._fd: int | None = None

    def __str__(self) -> str:
        return self.path

    async def _try(self) -> bool:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, identity().encode(), 0)
        return True

    async def _holder(self) -> str:
        return _read_holder(self.path)

    async def release(self) -> None:
        self.held = False
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def _read_holder(path: str) -> str:
    # A few bytes from a local file: not worth a thread.
    with contextlib.suppress(OSError):
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip() or "another process"
    return "another process"


class PostgresLock(LeaderLock):
    def __init__(self, url: str, poll_interval: float = POLL_INTERVAL) -> None:
        super().__init__(poll_interval)
        self.url = url
        self._conn: asyncpg.Connection | None = None
        self._broken = asyncio.Event()
        self._watch: asyncio.Task[None] | None = None

    def __str__(self) -> str:
        return f"postgres advisory lock {ADVISORY_KEY:#x}"

    async def _connect(self) -> asyncpg.Connection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        conn = await asyncpg.connect(
            self.url, timeout=5, server_settings={"application_name": f"claude-bridge {identity()}"}
        )
        self._broken.clear()
        conn.add_termination_listener(lambda _: self._broken.set())
        self._conn = conn
        return conn

    async def _try(self) -> bool:
        conn = await self._connect()
        return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", ADVISORY_KEY))

    async def _holder(self) -> str:
        with contextlib.suppress(Exception):
            conn = await self._connect()
            name = await conn.fetchval(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype='advisory' AND l.granted AND l.database=("
                "SELECT oid FROM pg_database WHERE datname=current_database()) "
                "AND ((l.classid::bigint << 32) | l.objid::bigint)=$1",
                ADVISORY_KEY,
            )
            if name:
                return str(name).removeprefix("claude-bridge ")
        return "another process"

    async def _on_acquired(self) -> None:
        self._watch = asyncio.create_task(self._keep(), name="leader-lock")

    async def _keep(self) -> None:
        """Hold on; when the connection breaks, take the lock back or give up the leadership."""
        while True:
            try:
                async with asyncio.timeout(HEARTBEAT):
                    await self._broken.wait()
            except TimeoutError:
                if await self._alive():
                    continue
            self.held = False
            log.warning("lost the connection holding the leader lock; taking it back")
            if not await self._take_back():
                return

    async def _alive(self) -> bool:
        conn = self._conn
        if conn is None or conn.is_closed():
            return False
        try:
            await conn.fetchval("SELECT 1", timeout=5)
            return True
        except Exception:
            conn.terminate()
            return False

    async def _take_back(self) -> bool:
        while True:
            try:
                if self._conn is not None and not self._conn.is_closed():
                    self._conn.terminate()
                self._conn = None
                if await self._try():
                    self.held = True
                    log.info("leader lock taken back")
                    return True
                holder = await self._holder()
                log.error(f"the leader lock went to {holder}; this process stops", holder=holder)
                self.lost.set()
                return False
            except Exception as e:
                log.debug("leader lock: database still unreachable", error=repr(e))
            await asyncio.sleep(self.poll_interval)

    async def release(self) -> None:
        self.held = False
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self._conn is not None:
            # Closing the session releases its advisory locks.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), 5)
            if not self._conn.is_closed():
                self._conn.terminate()
            self._conn = None


def leader_lock(database_url: str, **kwargs: Any) -> LeaderLock:
    """The lock for a database URL as ``create_database`` takes it."""
    if database_url.startswith(("postgres://", "postgresql://")):
        return PostgresLock(database_url, **kwargs)
    path = URL(database_url).path
    if path in ("", ":memory:"):
        return NoLock(**kwargs)
    return FileLock(f"{path}.lock", **kwargs)
