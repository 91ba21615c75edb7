"""The stores on real SQLite and real Postgres: migrations, thread upserts, outbox, Matrix events."""

from __future__ import annotations

import asyncio

from mautrix.util.async_db import Database, Scheme

from claude_bridge.ids import SessionID, ThreadID
from claude_bridge.store import (
    MatrixEventStore,
    Outbox,
    SentEvents,
    Thread,
    ThreadStore,
    create_database,
)
from claude_bridge.store.database import build_upgrade_table, load_migrations, schema_version
from tests.conftest import create_pg_database, drop_pg_database


async def _schema(db: Database) -> list[str]:
    if db.scheme == Scheme.SQLITE:
        rows = await db.fetch(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
        )
        return [f"{r['type']} {r['name']} {r['sql']}" for r in rows]
    cols = await db.fetch(
        "SELECT table_name, column_name, data_type, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema='public' ORDER BY table_name, column_name"
    )
    idx = await db.fetch(
        "SELECT indexdef FROM pg_indexes WHERE schemaname='public' ORDER BY indexname"
    )
    return [str(tuple(r)) for r in cols] + [r["indexdef"] for r in idx]


async def test_fresh_and_stepwise_upgraded_databases_match(store_url: str) -> None:
    migrations = load_migrations()
    assert migrations and all(m.description for m in migrations)
    fresh = create_database(store_url)
    await fresh.start()
    assert await schema_version(fresh) == len(migrations)
    want = await _schema(fresh)
    await fresh.stop()

    # A deployment that upgraded one release at a time ends in the same schema.
    if store_url.startswith("sqlite:"):
        other = store_url.replace("bridge.db", "stepwise.db")
    else:
        other = await create_pg_database()
    try:
        for step in range(1, len(migrations) + 1):
            db = create_database(other)
            db.upgrade_table = build_upgrade_table(migrations[:step])
            await db.start()
            assert await schema_version(db) == step
            await db.stop()
        db = create_database(other)
        await db.start()
        assert await _schema(db) == want
        await db.stop()
    finally:
        if not other.startswith("sqlite:"):
            await drop_pg_database(other)


async def test_rooms_made_before_v6_count_as_linked_into_their_space(store_url: str) -> None:
    """v6 retries space links; rooms that already had their one try are not tried again."""
    migrations = load_migrations()
    db = create_database(store_url)
    db.upgrade_table = build_upgrade_table(migrations[:5])
    await db.start()
    for thread_id, room in (("with-room", "!r:x"), ("no-room-yet", None)):
        await db.execute(
            "INSERT INTO thread (id, session_id, room_id, ghost_mxid, alias, status, created_at, "
            "updated_at) VALUES ($1, $1, $2, '@g:x', '#a:x', 'active', 1, 7)",
            thread_id,
            room,
        )
    await db.stop()
    db = create_database(store_url)
    await db.start()
    threads = ThreadStore(db)
    assert (await threads.get("with-room")).space_linked_at == 7  # type: ignore[union-attr]
    assert (await threads.get("no-room-yet")).space_linked_at is None  # type: ignore[union-attr]
    await db.stop()


async def test_thread_outbox_and_matrix_events_roundtrip(store_url: str) -> None:
    db = create_database(store_url)
    await db.start()
    threads, outbox, matrix_events = ThreadStore(db), Outbox(db), MatrixEventStore(db)
    thread = Thread(
        id=ThreadID("abc"),
        session_id=SessionID("ABC"),
        ghost_mxid="@claude-abc:x",
        alias="#claude-thread-abc:x",
    )
    stored = await asyncio.gather(*(threads.ensure(thread) for _ in range(10)))
    assert {t.id for t in stored} == {"abc"}
    ids = [await outbox.append("abc", "Stop", f'{{"n": {i}}}', "laptop") for i in range(3)]
    assert ids == sorted(ids)
    assert [p.id for p in await outbox.pending("abc")] == ids
    sent = SentEvents(db)
    await sent.record_part(ids[0], 0, "abc", "tool:1", "$e0")
    await sent.record_part(ids[0], 0, "abc", "tool:1", "$e0")  # idempotent
    assert await sent.sent_parts(ids[0]) == {0: "$e0"}
    assert await sent.anchor_target("abc", "tool:1") == ("$e0", None)
    await outbox.mark_sent(ids[0])
    assert [p.id for p in await outbox.pending("abc")] == ids[1:]
    assert (await outbox.backlog())[0] == 2

    event = {
        "event_id": "$m1",
        "room_id": "!r",
        "sender": "@a:x",
        "type": "m.room.message",
        "content": {},
    }
    assert await matrix_events.store_transaction("t1", [event, {"bogus": True}]) == 1
    assert await matrix_events.store_transaction("t1", [event]) is None  # replayed transaction
    assert await matrix_events.store_transaction("t2", [event]) == 0  # same event, new transaction
    assert [e.event_id for e in await matrix_events.unprocessed()] == ["$m1"]
    await matrix_events.mark_processed("$m1")
    assert await matrix_events.unprocessed() == []
    await db.stop()


async def test_a_withdrawn_runner_job_is_never_handed_out_and_a_handed_one_never_withdrawn(
    store_url: str,
) -> None:
    """The bridge takes back a ``type`` job whose runner went offline while a poll of that
    runner may be reading it: one conditional statement each, so exactly one of them wins."""
    from claude_bridge.store.runner_jobs import RunnerJob, RunnerJobStore

    db = create_database(store_url)
    await db.start()
    jobs = RunnerJobStore(db)
    for job_id in ("j1", "j2"):
        await jobs.add(RunnerJob(job_id, "laptop", "laptop", "type", "s1", "@a:x", text="hi"))
    read = await jobs.open_for("laptop", "laptop")  # a poll has read both
    assert await jobs.withdraw_queued("j1")  # then j1 is taken back
    assert await jobs.mark_sent([j.id for j in read]) == {"j2"}  # so only j2 goes out
    assert not await jobs.withdraw_queued("j2")  # handed out: the runner answers for it
    assert [j.id for j in await jobs.open_for("laptop", "laptop")] == ["j2"]
    assert await jobs.note_open("j2", "told") and not await jobs.note_open("j2", "again")
    await db.stop()


async def test_a_threads_latest_event_is_read_through_an_index(store_url: str) -> None:
    """Every message written into a thread asks for its latest hook event (has the session
    ended?). Without the (thread_id, id) index Postgres walked the table backwards from its
    newest row, all of it for a session with no recent events, and SQLite sorted all of a
    busy session's events: 12 ms and 6 ms at 60,000 events (migration 17)."""
    from claude_bridge.store.thread_control import ThreadControlStore

    db = create_database(store_url)
    await db.start()
    try:
        threads = [f"t{i}" for i in range(50)]
        async with db.acquire() as conn:
            for t in threads:
                await conn.execute(
                    "INSERT INTO thread (id, session_id, ghost_mxid, alias, room_id, status, "
                    "created_at, updated_at) VALUES ($1, $1, $2, $3, $4, 'active', 1, 1)",
                    t, f"@g-{t}:x", f"#a-{t}:x", f"!r-{t}:x",
                )  # fmt: skip
            rows = [(threads[i % 40], "PostToolUse" if i < 4999 else "SessionEnd", "{}",
                     "delivered", i) for i in range(5000)]  # fmt: skip
            await conn.executemany(
                "INSERT INTO hook_event (thread_id, event_name, payload, state, received_at) "
                "VALUES ($1, $2, $3, $4, $5)",
                rows,
            )
        controls = ThreadControlStore(db)
        assert await controls.last_event("t39") == ("SessionEnd", 4999)
        assert await controls.last_event("t0") == ("PostToolUse", 4960)
        assert await controls.last_event("t45") is None  # a thread with no events
        sql = (
            "SELECT event_name, received_at FROM hook_event WHERE thread_id=$1 "
            "ORDER BY id DESC LIMIT 1"
        )
        if db.scheme == Scheme.SQLITE:
            plan = " ".join(r[3] for r in await db.fetch("EXPLAIN QUERY PLAN " + sql, "t0"))
            assert "hook_event_thread_id_idx" in plan and "TEMP B-TREE" not in plan, plan
        else:
            async with db.acquire() as conn:
                await conn.execute("ANALYZE hook_event")
                # The plan a prepared statement settles on, whatever the thread.
                await conn.execute("SET plan_cache_mode = force_generic_plan")
                rows = await conn.fetch("EXPLAIN " + sql, "t45")
                plan = " ".join(r[0] for r in rows)
                await conn.execute("RESET plan_cache_mode")
            assert "hook_event_thread_id_idx" in plan, plan
    finally:
        await db.stop()


async def test_the_newest_events_of_several_names_are_read_through_an_index(
    store_url: str,
) -> None:
    """A compaction's notice asks for the newest PreCompact or PostCompact of a session that may
    hold 200,000 events and none of them: asked with ``IN``, SQLite walked the whole thread
    (160–200 ms); one name at a time the (thread_id, event_name, id) index answers (0.2 ms)."""
    from claude_bridge.store.hook_event_log import HookEventLog

    db = create_database(store_url)
    await db.start()
    try:
        async with db.acquire() as conn:
            await conn.execute(
                "INSERT INTO thread (id, session_id, ghost_mxid, alias, created_at, updated_at) "
                "VALUES ('t', 't', '@g:x', '#a:x', 1, 1)"
            )
            names = ["PreToolUse", "PostToolUse"] * 1000
            names[10], names[20], names[1500] = "PreCompact", "PostCompact", "PreCompact"
            await conn.executemany(
                "INSERT INTO hook_event (thread_id, event_name, payload, state, received_at) "
                "VALUES ('t', $1, $2, 'delivered', 1)",
                [(name, f'{{"n": {n}}}') for n, name in enumerate(names)],
            )
        log = HookEventLog(db)
        first = int(await db.fetchval("SELECT MIN(id) FROM hook_event"))
        compaction = ("PreCompact", "PostCompact")
        found = await log.recent_of("t", compaction, first + 2000, 5)
        assert [(i - first, name) for i, name, _ in found] == [
            (1500, "PreCompact"), (20, "PostCompact"), (10, "PreCompact")
        ]  # fmt: skip
        assert [i - first for i, _, _ in await log.recent_of("t", compaction, first + 20, 5)] == [
            10
        ]
        assert await log.latest_of("t", compaction, first + 21) == (
            first + 20, "PostCompact", '{"n": 20}'
        )  # fmt: skip
        assert len(await log.recent_of("t", ("PreToolUse", "PostToolUse"), first + 2000, 7)) == 7
        plan = await plan_of(db, HookEventLog.RECENT_OF_ONE, "t", "PreCompact", first + 2000, 1)
        assert "hook_event_thread_event_idx" in plan, plan
        assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan
    finally:
        await db.stop()


async def test_the_attachment_a_read_asks_for_is_found_through_an_index(store_url: str) -> None:
    """Every Read permission request asks which attachment it names: a scan of every message
    ever stored, 37 ms on SQLite and 9 ms on Postgres at 100,000 (migration 18)."""
    from claude_bridge.store.session_messages import SessionInbox

    db = create_database(store_url)
    await db.start()
    try:
        async with db.acquire() as conn:
            for t in ("t1", "t2"):
                await conn.execute(
                    "INSERT INTO thread (id, session_id, ghost_mxid, alias, created_at, "
                    "updated_at) VALUES ($1, $1, $2, $3, 1, 1)",
                    t, f"@g-{t}:x", f"#a-{t}:x",
                )  # fmt: skip
            await conn.executemany(
                "INSERT INTO session_message (event_id, thread_id, room_id, sender, body, state, "
                "received_at, file_path, file_store) VALUES ($1, $2, '!r', '@a:x', '', "
                "'delivered', 1, $3, $4)",
                [(f"$e{i}", f"t{i % 2 + 1}", f"/f/{i % 4}" if i % 10 == 0 else None,
                  "s" if i % 10 == 0 else None) for i in range(2000)],
            )  # fmt: skip
        inbox = SessionInbox(db)
        found = await inbox.attached_at("t1", "/f/0")
        assert found is not None and found.event_id == "$e1980"  # the newest of that path
        assert await inbox.attached_at("t2", "/f/0") is None  # t2's messages are the odd ones
        plan = await plan_of(db, SessionInbox.ATTACHED_AT, "t1", "/f/0")
        assert "session_message_file_path_idx" in plan, plan
    finally:
        await db.stop()


async def plan_of(db: Database, sql: str, *args: object) -> str:
    """The plan the store settles on for ``sql``: on Postgres the generic plan a prepared
    statement keeps whatever its arguments, after ANALYZE."""
    if db.scheme == Scheme.SQLITE:
        return " ".join(r[3] for r in await db.fetch("EXPLAIN QUERY PLAN " + sql, *args))
    async with db.acquire() as conn:
        await conn.execute("ANALYZE")
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        rows = await conn.fetch("EXPLAIN " + sql, *args)
        await conn.execute("RESET plan_cache_mode")
    return " ".join(r[0] for r in rows)
