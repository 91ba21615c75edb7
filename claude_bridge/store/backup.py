"""Export, import and moving stores.

An export is one JSON document holding, per thread, its ``thread`` row and every row of the
thread-scoped tables (``THREAD_TABLES``) plus the Matrix events of its room, verbatim: hook
payloads and Matrix events stay the exact text the bridge stored. ``import`` writes such a document
into an empty database with the ids it had, so Matrix transaction ids (``cb.<hook event id>.<part>``)
and the event mappings carry over; that is also how ``migrate-db`` moves SQLite to Postgres.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from mautrix.util.async_db import Database, Scheme
from mautrix.util.async_db.connection import LoggingConnection

from claude_bridge import __version__
from claude_bridge.store.database import create_database, schema_version

FORMAT = "claude-bridge-export"
VERSION = 1
# Tables with a ``thread_id`` column, parents before children (foreign keys). A test fails when a
# migration adds a thread-scoped table that is not listed here.
THREAD_TABLES = (
    "hook_event",
    "sent_event",
    "merged_message",
    "approval",
    "session_message",
    "thread_control",
    "thread_member",
    "audit_log",
    "file_request",
)
ROOM_TABLES = ("matrix_event",)


class BackupError(Exception):
    """The export cannot be written or read back; the message says why."""


def _row(record: Any) -> dict[str, Any]:
    return {key: record[key] for key in record.keys()}


async def _tables(db: Database) -> list[str]:
    return [t for t in (*THREAD_TABLES, *ROOM_TABLES) if await db.table_exists(t)]


async def export_threads(db: Database, thread_ids: list[str] | None = None) -> dict[str, Any]:
    """The export document for ``thread_ids`` (all threads when ``None``)."""
    if thread_ids is None:
        rows = await db.fetch("SELECT * FROM thread ORDER BY created_at, id")
    else:
        rows = []
        for thread_id in thread_ids:
            row = await db.fetchrow("SELECT * FROM thread WHERE id=$1", thread_id)
            if row is None:
                raise BackupError(f"no thread {thread_id!r}")
            rows.append(row)
    tables = await _tables(db)
    threads = []
    for row in rows:
        thread = _row(row)
        exported: dict[str, list[dict[str, Any]]] = {}
        for table in tables:
            if table in ROOM_TABLES:
                found = (
                    await db.fetch(
                        f"SELECT * FROM {table} WHERE room_id=$1 ORDER BY received_at, event_id",
                        thread["room_id"],
                    )
                    if thread["room_id"]
                    else []
                )
            else:
                found = await db.fetch(f"SELECT * FROM {table} WHERE thread_id=$1", thread["id"])
            exported[table] = sorted((_row(r) for r in found), key=_order)
        threads.append({"thread": thread, "tables": exported})
    return {
        "format": FORMAT,
        "version": VERSION,
        "bridge_version": __version__,
        "schema_version": await schema_version(db),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "threads": threads,
    }


def _order(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(str(row.get(k, "")).zfill(20) for k in ("id", "hook_event_id", "part"))


@dataclass
class ImportResult:
    threads: int
    rows: dict[str, int]


def check_document(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BackupError(f"not a claude-bridge export (format must be {FORMAT!r})")
    if doc.get("version") != VERSION:
        raise BackupError(f"export version {doc.get('version')!r}; this bridge reads {VERSION}")
    if not isinstance(doc.get("threads"), list):
        raise BackupError("export has no thread list")
    return doc


async def import_threads(db: Database, doc: Any) -> ImportResult:
    """Write an export into ``db`` (migrated, with no threads yet) in one transaction."""
    doc = check_document(doc)
    if int(doc.get("schema_version") or 0) > await schema_version(db):
        raise BackupError(
            f"the export is from schema v{doc['schema_version']}, newer than this database "
            f"(v{await schema_version(db)}): import it with the bridge version that exported it"
        )
    if await db.fetchval("SELECT COUNT(*) FROM thread"):
        raise BackupError("the target database already has threads; import needs an empty one")
    tables = await _tables(db)
    counts = dict.fromkeys(tables, 0)
    conn: LoggingConnection
    async with db.acquire() as conn, conn.transaction():
        types = {t: await _column_types(db, conn, t) for t in ("thread", *tables)}
        for entry in doc["threads"]:
            await _insert(conn, "thread", entry["thread"], types["thread"])
            for table in tables:
                for row in entry.get("tables", {}).get(table, []):
                    await _insert(conn, table, row, types[table])
                    counts[table] += 1
        if db.scheme != Scheme.SQLITE:
            await _advance_sequences(conn, [t for t in tables if "id" in types[t]])
    return ImportResult(len(doc["threads"]), counts)


async def _column_types(db: Database, conn: LoggingConnection, table: str) -> dict[str, str]:
    """Column → type, so values written by SQLite (booleans as 0/1) fit Postgres columns."""
    if db.scheme == Scheme.SQLITE:
        rows = await conn.fetch(f"PRAGMA table_info({table})")
        return {r["name"]: str(r["type"]).lower() for r in rows}
    rows = await conn.fetch(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name=$1 AND table_schema=current_schema()",
        table,
    )
    return {r["column_name"]: str(r["data_type"]).lower() for r in rows}


def _coerce(value: Any, column_type: str) -> Any:
    if value is None:
        return None
    if column_type == "boolean":
        return bool(value)
    if "int" in column_type:
        return int(value)
    if column_type in ("text", "character varying"):
        return str(value)
    return value


async def _insert(
    conn: LoggingConnection, table: str, row: dict[str, Any], types: dict[str, str]
) -> None:
    unknown = set(row) - set(types)
    if unknown:
        raise BackupError(f"{table}: the export has columns this database lacks: {sorted(unknown)}")
    columns = list(row)
    marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    await conn.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
        *(_coerce(row[c], types[c]) for c in columns),
    )


async def _advance_sequences(conn: LoggingConnection, tables: list[str]) -> None:
    """Rows came with their ids: move each serial sequence past them (Postgres)."""
    for table in tables:
        seq = await conn.fetchval("SELECT pg_get_serial_sequence($1, 'id')", table)
        if seq:
            await conn.execute(
                f"SELECT setval($1, GREATEST((SELECT COALESCE(MAX(id), 0) FROM {table}), 1))", seq
            )


async def migrate(from_url: str, to_url: str) -> ImportResult:
    """Copy every thread from one store to another (empty) one, e.g. SQLite → Postgres."""
    source, target = create_database(from_url), create_database(to_url)
    await source.start()
    try:
        await target.start()
        try:
            return await import_threads(target, await export_threads(source))
        finally:
            await target.stop()
    finally:
        await source.stop()
