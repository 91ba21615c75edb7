"""The leader lock: one holder per database, a waiter that says whom it waits for and takes over
when the holder goes, and (Postgres) a holder that notices when its session is gone."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from claude_bridge.store.lock import (
    ADVISORY_KEY,
    FileLock,
    LeaderLock,
    NoLock,
    PostgresLock,
    identity,
    leader_lock,
)
from tests.conftest import create_pg_database, drop_pg_database

FAST = 0.02  # poll interval for tests


async def _acquired(lock: LeaderLock, timeout: float = 10.0) -> None:
    await asyncio.wait_for(lock.acquire(), timeout)
    assert lock.held


async def _until(check: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(FAST)


def test_leader_lock_for_each_kind_of_url(tmp_path: Path) -> None:
    file_lock = leader_lock(f"sqlite:{tmp_path / 'bridge.db'}")
    assert isinstance(file_lock, FileLock) and file_lock.path == f"{tmp_path / 'bridge.db'}.lock"
    assert isinstance(leader_lock("sqlite::memory:"), NoLock)
    assert isinstance(leader_lock("postgres://u@h/db"), PostgresLock)
    assert isinstance(leader_lock("postgresql://u@h/db"), PostgresLock)


async def test_file_lock_waiter_names_the_holder_and_takes_over(tmp_path: Path) -> None:
    path = str(tmp_path / "bridge.db.lock")
    first, second = FileLock(path, FAST), FileLock(path, FAST)
    await _acquired(first)
    assert not await second._try()  # flock conflicts between open files, even in one process
    assert await second._holder() == identity()
    waiting = asyncio.create_task(second.acquire())
    await asyncio.sleep(5 * FAST)  # a few polls, all refused
    assert not waiting.done()
    await first.release()
    await asyncio.wait_for(waiting, 5)
    assert second.held
    await second.release()
    await second.release()  # idempotent


async def test_file_lock_is_freed_when_its_process_is_killed(tmp_path: Path) -> None:
    path = str(tmp_path / "bridge.db.lock")
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import fcntl, os, sys, time\n"
        f"fd = os.open({path!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, f'pid {os.getpid()} on elsewhere'.encode())\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert await holder.stdout.readline() == b"locked\n"
        lock = FileLock(path, FAST)
        waiting = asyncio.create_task(lock.acquire())
        await asyncio.sleep(5 * FAST)
        assert not waiting.done()
        assert await lock._holder() == f"pid {holder.pid} on elsewhere"
        holder.kill()  # SIGKILL: the kernel drops the flock
        await asyncio.wait_for(waiting, 5)
        assert lock.held
        await lock.release()
    finally:
        if holder.returncode is None:
            holder.kill()
        await holder.wait()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    url = await create_pg_database()
    try:
        yield url
    finally:
        await drop_pg_database(url)


async def test_postgres_lock_waiter_names_the_holder_and_takes_over(pg_url: str) -> None:
    first, second = PostgresLock(pg_url, FAST), PostgresLock(pg_url, FAST)
    try:
        await _acquired(first)
        assert not await second._try()
        assert await second._holder() == identity()
        waiting = asyncio.create_task(second.acquire())
        await asyncio.sleep(5 * FAST)
        assert not waiting.done()
        await first.release()
        await asyncio.wait_for(waiting, 5)
        assert second.held
    finally:
        await first.release()
        await second.release()


async def test_postgres_lock_on_another_database_is_independent(pg_url: str) -> None:
    other = await create_pg_database()
    here, there = PostgresLock(pg_url, FAST), PostgresLock(other, FAST)
    try:
        await _acquired(here)
        await _acquired(there)
    finally:
        await here.release()
        await there.release()
        await drop_pg_database(other)


async def _terminate_lock_session(conn: asyncpg.Connection, then: str = "") -> None:
    await conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE application_name = 'claude-bridge {identity()}' "
        f"AND datname = current_database();{then}"
    )


async def test_postgres_holder_takes_its_lock_back_after_its_session_dies(pg_url: str) -> None:
    lock = PostgresLock(pg_url, FAST)
    admin = await asyncpg.connect(pg_url)
    try:
        await _acquired(lock)
        session = lock._conn
        await _terminate_lock_session(admin)

        await _until(lambda: lock.held and lock._conn not in (None, session))
        assert not lock.lost.is_set()
        assert not await admin.fetchval("SELECT pg_try_advisory_lock($1)", ADVISORY_KEY)
    finally:
        await admin.close()
        await lock.release()


async def test_postgres_holder_gives_up_when_another_took_the_lock(pg_url: str) -> None:
    lock = PostgresLock(pg_url, FAST)
    thief = await asyncpg.connect(pg_url)
    try:
        await _acquired(lock)
        # Queue for the lock in the same round trip, so the thief is first in line.
        await _terminate_lock_session(thief, f"SELECT pg_advisory_lock({ADVISORY_KEY})")
        await asyncio.wait_for(lock.lost.wait(), 10)
        assert not lock.held
    finally:
        await thief.close()
        await lock.release()


async def test_first_attempt_fails_loudly_when_the_database_is_unreachable() -> None:
    with pytest.raises((OSError, asyncpg.PostgresError)):
        await PostgresLock("postgres://postgres@127.0.0.1:1/nowhere", FAST).acquire()


def test_identity_names_this_process() -> None:
    assert identity().startswith(f"pid {os.getpid()} on ")
