"""Group commit (``store/group_commit.py``) on a real Postgres: hook INSERTs that wait together
share one statement, each caller is answered only after its row is committed, a row the server
refuses fails only its own caller, a lost connection fails the batch (and stores none of it),
and batches stay within their bounds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from mautrix.util.async_db import Database, PostgresDatabase

from claude_bridge.ids import SessionID, ThreadID
from claude_bridge.store import Outbox, Thread, ThreadStore, create_database
from claude_bridge.store.group_commit import DEPTH, GroupCommit
from claude_bridge.store.outbox import _APPEND_KEYED, _APPEND_MANY
from tests.conftest import create_pg_database, drop_pg_database
from tests.e2e.private_pg import PrivatePostgres

THREADS = [ThreadID(f"t{i}") for i in range(20)]


@pytest.fixture
async def db() -> AsyncIterator[PostgresDatabase]:
    url = await create_pg_database()
    database = create_database(url)
    await database.start()
    store = ThreadStore(database)
    for t in THREADS:
        await store.ensure(Thread(t, SessionID(f"s-{t}"), f"@claude-{t}:x", f"#claude-{t}:x"))
    try:
        assert isinstance(database, PostgresDatabase)
        yield database
    finally:
        await database.stop()
        await drop_pg_database(url)


def _writer(db: PostgresDatabase, **bounds: int) -> GroupCommit:
    return GroupCommit(db.pool, _APPEND_KEYED, _APPEND_MANY, **bounds)


async def _stored(db: Database) -> dict[str, tuple[int, str]]:
    """payload → (id, thread_id) of every stored hook event."""
    rows = await db.fetch("SELECT id, thread_id, payload FROM hook_event")
    return {r["payload"]: (r["id"], r["thread_id"]) for r in rows}


async def test_sessions_posting_at_once_share_commits_each_stored_once(
    db: PostgresDatabase,
) -> None:
    outbox = Outbox(db)
    per_thread = 10

    async def session(thread: ThreadID) -> list[tuple[int, str]]:
        got = []
        for n in range(per_thread):  # one after another, as one session's hooks come
            body = f'{{"thread": "{thread}", "n": {n}}}'
            got.append((await outbox.append(thread, "PostToolUse", body, "laptop"), body))
        return got

    results = await asyncio.gather(*(session(t) for t in THREADS))
    writer = outbox._group
    assert writer is not None
    stored = await _stored(db)
    assert len(stored) == len(THREADS) * per_thread  # each exactly once
    for thread, got in zip(THREADS, results, strict=True):
        ids = [i for i, _ in got]
        assert ids == sorted(ids)  # a thread's events keep their order
        for hook_event_id, body in got:
            assert stored[body] == (hook_event_id, thread)  # the id each caller got is its row
    # They did share commits: fewer statements than rows, never more than DEPTH at once.
    assert writer.largest > 1
    assert writer.batches < len(stored)
    assert writer.most_in_flight == DEPTH
    await outbox.close()


async def test_a_batch_keeps_arrival_order_and_its_bound(db: PostgresDatabase) -> None:
    writer = _writer(db, max_rows=5)
    thread = THREADS[0]
    # All queued in one loop turn, one thread: the first goes out alone, and as a thread is
    # never in flight twice, the rest follow one batch of ≤ 5 at a time.
    ids = await asyncio.gather(
        *(writer.insert(thread, "PreToolUse", f'{{"n": {n}}}', None, n, None) for n in range(23))
    )
    assert ids == sorted(ids) and len(set(ids)) == 23
    assert writer.largest == 5 and writer.most_in_flight == 1
    assert writer.batches == 1 + 5  # 1, then 5 + 5 + 5 + 5 + 2
    stored = await _stored(db)
    assert [stored[f'{{"n": {n}}}'][0] for n in range(23)] == ids
    await writer.close()


async def test_a_batch_stays_within_its_byte_bound(db: PostgresDatabase) -> None:
    writer = _writer(db, max_bytes=2000)
    big = "x" * 900
    ids = await asyncio.gather(
        *(writer.insert(THREADS[1], "PostToolUse", f'"{big}{n}"', None, n, None) for n in range(9))
    )
    assert len(set(ids)) == 9
    assert writer.largest == 2  # two ~900-byte rows fit in 2000 bytes, three do not
    # A single row larger than the bound still goes out (alone).
    huge = await writer.insert(THREADS[1], "PostToolUse", '"' + "y" * 5000 + '"', None, 0, None)
    assert huge > max(ids)
    await writer.close()


async def test_a_replayed_key_in_a_batch_is_stored_once(db: PostgresDatabase) -> None:
    outbox = Outbox(db)
    first = await outbox.append(THREADS[0], "PreToolUse", '"first try"', None, key="k-0")
    # Queued in one turn: DEPTH go out alone, then the replay of k-0 shares a batch with new
    # keyed and unkeyed events.
    leading = THREADS[4 : 4 + DEPTH]
    calls = [outbox.append(t, "PreToolUse", f'"lead {t}"', None, key=f"k-{t}") for t in leading]
    calls += [
        outbox.append(THREADS[0], "PreToolUse", '"first try"', None, key="k-0"),
        outbox.append(THREADS[2], "PreToolUse", '"new"', None, key="k-2"),
        outbox.append(THREADS[3], "PreToolUse", '"no key"', None),
    ]
    results = await asyncio.gather(*calls)
    leads, (again, new, keyless) = results[:DEPTH], results[DEPTH:]
    assert outbox._group is not None and outbox._group.largest == 3
    assert again == first  # the replay is answered with the stored event
    stored = await _stored(db)
    assert len(stored) == 1 + DEPTH + 2
    assert [stored[f'"lead {t}"'][0] for t in leading] == leads
    assert stored['"first try"'][0] == first
    assert stored['"new"'][0] == new and stored['"no key"'][0] == keyless
    await outbox.close()


async def test_a_refused_row_fails_only_its_caller(db: PostgresDatabase) -> None:
    outbox = Outbox(db)
    # Queued in one turn: the first DEPTH alone, then a batch holding a row whose thread does
    # not exist (a foreign-key violation): the server refuses the whole statement.
    good_threads = THREADS[: DEPTH + 3]
    calls = [outbox.append(t, "PreToolUse", f'{{"n": "{t}"}}', None) for t in good_threads]
    bad = DEPTH + 1
    calls.insert(bad, outbox.append("no-such-thread", "PreToolUse", '{"n": "bad"}', None))
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[bad], asyncpg.ForeignKeyViolationError)
    good = [r for i, r in enumerate(results) if i != bad]
    assert all(isinstance(r, int) for r in good)
    stored = await _stored(db)
    assert sorted(stored) == sorted(f'{{"n": "{t}"}}' for t in good_threads)
    assert sorted(i for i, _ in stored.values()) == sorted(good)  # type: ignore[type-var]
    assert outbox._group is not None and outbox._group.largest == 4
    await outbox.close()


async def test_a_lost_connection_fails_the_batch_and_stores_none_of_it(
    db: PostgresDatabase,
) -> None:
    # A row of thread t9 takes a while to insert, long enough to kill the writer's connection
    # while its batch is in flight.
    await db.execute(
        "CREATE FUNCTION slow_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.thread_id = 't9' THEN PERFORM pg_sleep(30); END IF; RETURN NEW; END $$"
    )
    await db.execute(
        "CREATE TRIGGER slow_row BEFORE INSERT ON hook_event FOR EACH ROW EXECUTE FUNCTION slow_row()"
    )
    writer = _writer(db, depth=1)
    first = await writer.insert(THREADS[0], "PreToolUse", '"before"', None, 0, None)
    # Queued in one turn: t1 goes out alone, then t9, t2 and t3 as one batch.
    calls = [
        asyncio.ensure_future(writer.insert(t, "PreToolUse", f'"{t}"', None, 0, None))
        for t in (THREADS[1], THREADS[9], THREADS[2], THREADS[3])
    ]
    killer = await asyncpg.connect(db.url.with_scheme("postgresql").human_repr())
    try:
        for _ in range(600):
            killed = await killer.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE wait_event = 'PgSleep' AND query LIKE '%hook_event%'"
            )
            if killed:
                break
            await asyncio.sleep(0.05)
        assert killed == 1
    finally:
        await killer.close()
    alone, *batch = await asyncio.gather(*calls, return_exceptions=True)
    # Nobody is told "stored", and each is told why: the server ended the session.
    assert all("administrator command" in str(r) for r in batch), batch
    stored = await _stored(db)
    assert sorted(stored) == sorted(['"before"', '"t1"'])  # and indeed none of the batch is
    assert stored['"before"'][0] == first and stored['"t1"'][0] == alone
    assert writer.largest == 3
    # The writer takes a new connection for the next caller.
    after = await writer.insert(THREADS[3], "PreToolUse", '"after"', None, 0, None)
    assert (await _stored(db))['"after"'][0] == after
    await writer.close()


async def test_after_the_server_restarts_the_writer_stores_again() -> None:
    cluster = PrivatePostgres()  # a server of the test's own: the shared one is never stopped
    try:
        await cluster.init()
        await cluster.start()
        database = create_database(await cluster.create_database("bridge"))
        await database.start()
        thread = Thread(THREADS[0], SessionID("s"), "@claude-t0:x", "#claude-t0:x")
        await ThreadStore(database).ensure(thread)
        outbox = Outbox(database)
        before = await outbox.append(thread.id, "PreToolUse", '"before"', None)
        await cluster.stop()
        with pytest.raises(Exception):  # noqa: B017 - whatever the driver says; not stored
            await outbox.append(thread.id, "PreToolUse", '"while down"', None)
        await cluster.start()
        after = None
        for _ in range(300):  # the pool reconnects at its own pace
            try:
                after = await outbox.append(thread.id, "PreToolUse", '"after"', None)
                break
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await asyncio.sleep(0.1)
        assert after is not None and after > before
        assert sorted(await _stored(database)) == ['"after"', '"before"']
        await outbox.close()
        await database.stop()
    finally:
        await cluster.destroy()


async def test_inside_a_transaction_the_append_is_part_of_it(db: PostgresDatabase) -> None:
    outbox = Outbox(db)

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with db.acquire() as conn, conn.transaction():
            await outbox.append(THREADS[0], "PreToolUse", '"rolled back"', None)
            raise Abort
    assert await _stored(db) == {}
    assert outbox._group is None  # the group writer was not used
    await outbox.close()


async def test_switched_off_each_append_commits_alone(db: PostgresDatabase) -> None:
    outbox = Outbox(db, group_commit=False)
    ids = await asyncio.gather(
        *(outbox.append(t, "PreToolUse", f'"{t}"', None) for t in THREADS[:5])
    )
    assert len(set(ids)) == 5 and len(await _stored(db)) == 5
    assert outbox._group is None
    await outbox.close()
