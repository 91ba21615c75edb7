"""Export, import (SQLite ⇄ Postgres), the Markdown transcript, and retention pruning."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mautrix.util.async_db import Database

from claude_bridge import retention
from claude_bridge.cli import main
from claude_bridge.export_markdown import render_markdown
from claude_bridge.store import (
    MatrixEventStore,
    Outbox,
    SentEvents,
    Thread,
    ThreadStore,
    backup,
    create_database,
)
from claude_bridge.store.database import migrations_dir, now_ms
from tests.conftest import create_pg_database, drop_pg_database

DAY = retention.DAY_MS


@pytest.fixture
async def db(store_url: str) -> AsyncIterator[Database]:
    database = create_database(store_url)
    await database.start()
    yield database
    await database.stop()


@pytest.fixture
async def other_url(store_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """An empty store of the other kind: SQLite → Postgres, Postgres → SQLite."""
    if store_url.startswith("sqlite:"):
        url = await create_pg_database()
        yield url
        await drop_pg_database(url)
    else:
        yield f"sqlite:{tmp_path / 'other.db'}"


def _message(event_id: str, room: str, sender: str, body: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "room_id": room,
        "sender": sender,
        "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": body},
    }


async def fill(db: Database, now: int) -> None:
    """Two threads: delivered events with their Matrix ids, a pending one, room messages."""
    threads, outbox, matrix_events = ThreadStore(db), Outbox(db), MatrixEventStore(db)
    for n in (1, 2):
        await threads.ensure(
            Thread(
                f"t{n}",
                f"T{n}",
                f"@claude-t{n}:hs",
                f"#claude-thread-t{n}:hs",
                project_path="/src/demo",
                project_name="demo",
            )
        )
        await threads.set_room(f"t{n}", f"!room{n}:hs")
    prompt = await outbox.append("t1", "UserPromptSubmit", '{"prompt": "fix the parser"}', "laptop")
    stop = await outbox.append(
        "t1", "Stop", '{"last_assistant_message": "Fixed it.", "x": 1}', "laptop"
    )
    pending = await outbox.append("t2", "PreToolUse", '{"tool_name": "Bash"}', "desk")
    for hook_id, event_id in ((prompt, "$prompt"), (stop, "$stop")):
        await SentEvents(db).record_part(hook_id, 0, "t1", None, event_id)
        await outbox.mark_sent(hook_id)
    await db.execute("UPDATE hook_event SET received_at=$1 WHERE id<>$2", now - 10 * DAY, pending)
    await matrix_events.store_transaction(
        "txn1",
        [
            _message("$prompt", "!room1:hs", "@claude-t1:hs", "fix the parser"),  # the ghost's own
            _message("$alice", "!room1:hs", "@alice:hs", "please add a test too"),
            _message("$elsewhere", "!other:hs", "@bob:hs", "not a thread room"),
        ],
    )
    await matrix_events.mark_processed("$prompt")
    await matrix_events.mark_processed("$alice")
    await db.execute("UPDATE matrix_event SET received_at=$1", now - 10 * DAY)
    await db.execute("UPDATE appservice_txn SET received_at=$1", now - 10 * DAY)
    if await db.table_exists("approval"):
        await db.execute(
            "INSERT INTO approval (hook_event_id, thread_id, call_key, tool_name, request, state, "
            "created_at, expires_at, decided_by, decided_at) "
            "VALUES ($1, 't1', 'k', 'Bash', '{}', 'allowed', $2, $3, '@alice:hs', $2)",
            stop,
            now - 10 * DAY,
            now,
        )
    if await db.table_exists("thread_control"):  # a BOOLEAN column: 0/1 in SQLite
        await db.execute("INSERT INTO thread_control (thread_id, muted) VALUES ('t1', true)")


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "exported_at"}


async def test_round_trip_to_the_other_store(db: Database, other_url: str) -> None:
    await fill(db, now_ms())
    doc = json.loads(json.dumps(await backup.export_threads(db)))  # through JSON, as on disk
    assert [t["thread"]["id"] for t in doc["threads"]] == ["t1", "t2"]
    t1 = doc["threads"][0]["tables"]
    assert [r["event_id"] for r in t1["matrix_event"]] == ["$alice", "$prompt"]
    assert [r["event_id"] for r in t1["sent_event"]] == ["$prompt", "$stop"]
    assert t1["hook_event"][1]["payload"] == '{"last_assistant_message": "Fixed it.", "x": 1}'

    target = create_database(other_url)
    await target.start()
    try:
        result = await backup.import_threads(target, doc)
        assert result.threads == 2 and result.rows["hook_event"] == 3
        assert _comparable(await backup.export_threads(target)) == _comparable(doc)
        # New rows get ids after the imported ones (the serial sequence moved on).
        new_id = await Outbox(target).append("t2", "Stop", "{}", "desk")
        assert new_id > max(r["id"] for t in doc["threads"] for r in t["tables"]["hook_event"])
        with pytest.raises(backup.BackupError, match="already has threads"):
            await backup.import_threads(target, doc)
    finally:
        await target.stop()


async def test_import_refuses_what_it_cannot_read(db: Database) -> None:
    with pytest.raises(backup.BackupError, match="not a claude-bridge export"):
        await backup.import_threads(db, {"threads": []})
    doc = await backup.export_threads(db)
    with pytest.raises(backup.BackupError, match="newer than this database"):
        await backup.import_threads(db, {**doc, "schema_version": 999})
    with pytest.raises(backup.BackupError, match="no thread 'nope'"):
        await backup.export_threads(db, ["nope"])


async def test_markdown_reads_as_a_transcript(db: Database) -> None:
    await fill(db, now_ms())
    text = render_markdown(await backup.export_threads(db, ["t1"]))
    assert "## demo · t1" in text
    assert "> fix the parser" in text and "`$prompt`" in text
    assert "🤖 **Claude** · " in text and "`$stop`\n\nFixed it." in text  # as Claude wrote it
    assert "**@alice:hs**" in text and "> please add a test too" in text
    assert text.count("fix the parser") == 1  # the ghost's own Matrix event is not repeated
    assert "not a thread room" not in text
    if await db.table_exists("approval"):
        assert "Bash: allowed by @alice:hs" in text


async def test_retention_prunes_old_delivered_payloads_only(db: Database) -> None:
    now = now_ms()
    await fill(db, now)
    assert await retention.prune(db, 30, now) == {
        "hook_event": 0,
        "matrix_event": 0,
        "appservice_txn": 0,
    }
    pruned = await retention.prune(db, 7, now, batch=1)  # batches of one: the loop must go on
    assert pruned == {"hook_event": 2, "matrix_event": 2, "appservice_txn": 1}
    rows = await db.fetch("SELECT thread_id, state, payload FROM hook_event ORDER BY id")
    assert [r["payload"] for r in rows[:2]] == [retention.PRUNED_PAYLOAD] * 2
    assert rows[2]["state"] == "pending" and rows[2]["payload"] == '{"tool_name": "Bash"}'
    # The mappings stay: threads, rooms, and which Matrix events each hook event became.
    assert await db.fetchval("SELECT COUNT(*) FROM thread WHERE room_id IS NOT NULL") == 2
    assert await db.fetchval("SELECT COUNT(*) FROM sent_event") == 2
    left = await db.fetch("SELECT event_id FROM matrix_event")
    assert [r["event_id"] for r in left] == ["$elsewhere"]  # not processed yet: kept
    assert await retention.prune(db, 7, now) == {
        "hook_event": 0,
        "matrix_event": 0,
        "appservice_txn": 0,
    }


def test_every_thread_scoped_table_is_exported() -> None:
    """A migration that adds a table with a thread_id column must list it in THREAD_TABLES."""
    scoped = set()
    for path in sorted(migrations_dir().glob("*.sql")):
        for name, body in re.findall(r"CREATE TABLE (\w+) \((.*?)\n\);?", path.read_text(), re.S):
            if re.search(r"^\s*thread_id\s", body, re.M):
                scoped.add(name)
    assert scoped and scoped <= set(backup.THREAD_TABLES), scoped - set(backup.THREAD_TABLES)


def test_cli_export_and_import(store_url: str, other_url: str, tmp_path: Path) -> None:
    async def prepare() -> None:
        db = create_database(store_url)
        await db.start()
        await fill(db, now_ms())
        await db.stop()

    asyncio.run(prepare())  # the commands run their own event loop, as from a shell
    out = tmp_path / "export.json"
    assert main(["export", "--database", store_url, "--all", "-o", str(out)]) == 0
    assert out.stat().st_mode & 0o077 == 0
    md = tmp_path / "t1.md"
    assert (
        main(
            [
                "export",
                "--database",
                store_url,
                "--thread",
                "t1",
                "--format",
                "markdown",
                "-o",
                str(md),
            ]
        )
        == 0
    )
    assert "please add a test too" in md.read_text()
    assert main(["import", "--database", other_url, str(out)]) == 0
    assert main(["import", "--database", other_url, str(out)]) == 1  # not empty any more
    assert main(["export", "--database", store_url, "--thread", "nope", "-o", "-"]) == 1


async def test_the_pruner_runs_while_the_bridge_runs(db: Database) -> None:
    now = now_ms()
    await fill(db, now)
    pruner = retention.RetentionPruner(db, 7, interval=0.01)
    pruner.start()
    try:
        for _ in range(500):  # polls the store, bounded: about 5 s at most
            left = await db.fetchval(
                "SELECT COUNT(*) FROM hook_event WHERE state='sent' AND payload<>$1",
                retention.PRUNED_PAYLOAD,
            )
            if left == 0:
                break
            await asyncio.sleep(0.01)
        assert left == 0
    finally:
        await pruner.stop()
    assert pruner._task is not None and pruner._task.done()


def test_cli_migrate_db(store_url: str, other_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    async def prepare() -> None:
        db = create_database(store_url)
        await db.start()
        await fill(db, now_ms())
        await db.stop()

    asyncio.run(prepare())
    assert main(["migrate-db", "--from", store_url, "--to", other_url]) == 0
    assert "copied 2 thread(s)" in capsys.readouterr().out
    assert main(["migrate-db", "--from", store_url, "--to", other_url]) == 1
    assert "already has threads" in capsys.readouterr().err
    unreachable = "postgres://nobody@127.0.0.1:1/nothing"
    assert main(["migrate-db", "--from", store_url, "--to", unreachable]) == 1
    assert "claude-bridge: " in capsys.readouterr().err
