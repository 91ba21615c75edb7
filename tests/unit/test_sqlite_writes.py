"""The SQLite write path on a real file: the hook INSERT on the loop, waits for the write lock,
background checkpoints, single-trip write batches; the same calls on Postgres where they apply."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mautrix.util.async_db import Database

from claude_bridge.ids import SessionID, ThreadID
from claude_bridge.store import (
    MatrixEventStore,
    Outbox,
    SentEvents,
    Thread,
    ThreadStore,
    create_database,
)
from claude_bridge.store import sqlite as sqlite_store
from claude_bridge.store.checkpoints import WalCheckpoints
from claude_bridge.store.writes import Write, write_atomically


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = create_database(f"sqlite:{tmp_path / 'bridge.db'}")
    await database.start()
    await ThreadStore(database).ensure(
        Thread(ThreadID("t1"), SessionID("s1"), "@claude-t1:x", "#claude-thread-t1:x")
    )
    try:
        yield database
    finally:
        await database.stop()


def _hold_write_lock(path: str) -> sqlite3.Connection:
    """Another process's writer, as far as SQLite can tell: it holds the write lock."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE thread SET title='held' WHERE id='t1'")
    return other


async def test_hook_insert_runs_on_the_loop_and_falls_back_when_the_lock_is_taken(
    db: Database,
) -> None:
    outbox = Outbox(db)
    first = await outbox.append("t1", "PreToolUse", "{}", None)
    other = _hold_write_lock(db.url.path)
    try:
        # The loop cannot take the lock: the pool's thread waits for it instead, and the
        # loop stays free meanwhile (the sleep below runs while append waits).
        waiting = asyncio.ensure_future(outbox.append("t1", "PostToolUse", "{}", None))
        await asyncio.sleep(0.2)
        assert not waiting.done()
    finally:
        other.execute("COMMIT")
        other.close()
    second = await asyncio.wait_for(waiting, 5)
    assert second == first + 1
    rows = await db.fetch("SELECT id, event_name FROM hook_event ORDER BY id")
    assert [(r["id"], r["event_name"]) for r in rows] == [
        (first, "PreToolUse"),
        (second, "PostToolUse"),
    ]
    await outbox.close()


async def test_a_failing_hook_insert_raises_instead_of_falling_back(db: Database) -> None:
    outbox = Outbox(db)
    with pytest.raises(sqlite3.IntegrityError):  # no such thread: the foreign key refuses it
        await outbox.append("nope", "PreToolUse", "{}", None)
    assert await db.fetchval("SELECT COUNT(*) FROM hook_event") == 0
    await outbox.close()


async def test_a_write_waits_for_the_lock_and_gives_up_after_the_busy_timeout(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = _hold_write_lock(db.url.path)
    try:
        release = asyncio.get_running_loop().call_later(0.3, other.execute, "COMMIT")
        await db.execute("UPDATE thread SET title='mine' WHERE id='t1'")  # waits, then writes
        release.cancel()
        assert await db.fetchval("SELECT title FROM thread WHERE id='t1'") == "mine"

        monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT", 0.2)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await db.execute("UPDATE thread SET title='late' WHERE id='t1'")
        other.execute("ROLLBACK")
    finally:
        other.close()


async def test_a_write_batch_is_one_transaction(db: Database) -> None:
    outbox = Outbox(db)
    hook = await outbox.append("t1", "PreToolUse", "{}", None)
    await SentEvents(db).record_part(hook, 0, "t1", None, "$a", last=True)
    row = await db.fetchrow("SELECT state FROM hook_event WHERE id=$1", hook)
    assert row["state"] == "sent" and await SentEvents(db).sent_parts(hook) == {0: "$a"}
    with pytest.raises(sqlite3.IntegrityError):
        await write_atomically(
            db,
            [
                Write("UPDATE thread SET title='half' WHERE id='t1'"),
                Write("INSERT INTO sent_event (hook_event_id, part, thread_id, event_id) "
                      "VALUES ($1, 0, 'nope', '$b')", (hook + 100,)),
            ],
        )  # fmt: skip
    assert await db.fetchval("SELECT title FROM thread WHERE id='t1'") is None  # rolled back
    await outbox.close()


async def test_checkpoints_run_in_the_background_not_on_commit(db: Database) -> None:
    assert await db.fetchval("PRAGMA wal_autocheckpoint") == 0
    outbox = Outbox(db)
    for _ in range(50):
        await outbox.append("t1", "PreToolUse", "x" * 4000, None)
    frames = (await db.fetchrow("PRAGMA wal_checkpoint(NOOP)"))[1]
    checkpoints = WalCheckpoints(db, interval=0.05)
    checkpoints.start()
    try:
        for _ in range(100):
            if checkpoints.done:
                break
            await asyncio.sleep(0.02)
    finally:
        await checkpoints.stop()
    assert checkpoints.done >= 2  # at least one round, and the last one on stop
    _, frames_after, done_after = await db.fetchrow("PRAGMA wal_checkpoint(NOOP)")
    assert frames_after >= frames > 0 and done_after == frames_after
    await outbox.close()


async def test_checkpoints_run_on_sqlite_only(store_url: str) -> None:
    database = create_database(store_url)
    await database.start()
    checkpoints = WalCheckpoints(database, interval=0.01)
    checkpoints.start()
    await asyncio.sleep(0.05)
    await checkpoints.stop()
    assert (checkpoints.done > 0) == store_url.startswith("sqlite:")
    await database.stop()


async def test_transactions_of_only_echoes_write_nothing(store_url: str) -> None:
    database = create_database(store_url)
    await database.start()
    matrix_events = MatrixEventStore(database)
    assert await matrix_events.store_transaction("t1", [{"no": "id"}]) == 0
    assert await database.fetchval("SELECT COUNT(*) FROM appservice_txn") == 0
    await database.stop()


def test_importing_the_store_leaves_mautrix_alone_until_a_database_is_created(
    tmp_path: Path,
) -> None:
    """The connection class is swapped by ``create_database``, not as a side effect of import."""
    import subprocess
    import sys

    probe = (
        "from mautrix.util.async_db import aiosqlite as m\n"
        "import claude_bridge.store.database as d, claude_bridge.store.backup\n"
        "from claude_bridge.store.sqlite import SQLiteConnection as S\n"
        "print(m.TxnConnection is S)\n"
        f"d.create_database('sqlite:///{tmp_path}/a.db')\n"
        "print(m.TxnConnection is S)\n"
        f"d.create_database('sqlite:///{tmp_path}/b.db')\n"
        "print(m.TxnConnection is S)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "True", "True"]
