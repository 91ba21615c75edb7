"""Database creation and the SQL migrations in ``migrations/``.

Each ``NNN_name.sql`` file is one forward-only step; its first line ``-- vN: description`` names
it. A line ending in ``-- only: postgres`` or ``-- only: sqlite`` is kept for that dialect only, so
one file serves both stores.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from mautrix.util.async_db import Database, Scheme, UpgradeTable
from mautrix.util.async_db.connection import LoggingConnection
from yarl import URL

from claude_bridge.files import create_private
from claude_bridge.log import mau_logger

# Importing it also makes SQLiteConnection the pool's connection class.
from claude_bridge.store.sqlite import CONNECTION_PRAGMAS, use_bridge_connections

_HEADER = re.compile(r"^--\s*v(\d+):\s*(.+)$")
_ONLY = re.compile(r"--\s*only:\s*(postgres|sqlite)\s*$")


def now_ms() -> int:
    return int(time.time() * 1000)


def migrations_dir() -> Path:
    """Inside an installed wheel the files ship as ``claude_bridge/_migrations``."""
    packaged = Path(__file__).resolve().parent.parent / "_migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "migrations"


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str

    def statements(self, scheme: Scheme) -> list[str]:
        dialect = "sqlite" if scheme == Scheme.SQLITE else "postgres"
        kept = []
        for line in self.sql.splitlines():
            only = _ONLY.search(line)
            if only and only.group(1) != dialect:
                continue
            kept.append(_ONLY.sub("", line))
        text = "\n".join(kept)
        # Statements end with ';' at the end of a line; no migration puts one inside a literal.
        return [s.strip() for s in re.split(r";\s*$", text, flags=re.M) if s.strip()]


def load_migrations(directory: Path | None = None) -> list[Migration]:
    directory = directory or migrations_dir()
    found = []
    for path in sorted(directory.glob("*.sql")):
        first = path.read_text().splitlines()[0] if path.read_text() else ""
        header = _HEADER.match(first)
        if not header:
            raise RuntimeError(f"{path}: first line must be '-- vN: description'")
        found.append(Migration(int(header.group(1)), header.group(2).strip(), path.read_text()))
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise RuntimeError(
                f"migration v{migration.version} out of sequence (expected v{expected})"
            )
    return found


def build_upgrade_table(migrations: list[Migration]) -> UpgradeTable:
    table = UpgradeTable(version_table_name="schema_version", log=mau_logger("db.upgrade"))
    for migration in migrations:

        async def upgrade(
            conn: LoggingConnection, scheme: Scheme, m: Migration = migration
        ) -> None:
            for statement in m.statements(scheme):
                await conn.execute(statement)

        table.register(upgrade, description=migration.description)
    return table


SQLITE_CONNECTIONS = 3


def sqlite_path(url: str) -> Path | None:
    """The file behind a ``sqlite:`` URL; None for Postgres or an in-memory database."""
    if not url.startswith("sqlite:"):
        return None
    path = URL(url).path
    return None if path in ("", ":memory:") else Path(path)


def create_private_sqlite(url: str) -> None:
    """Create a SQLite database file 0600 (in a 0700 directory if that is new) before SQLite
    does: SQLite gives the -wal and -shm files the database file's mode, so all three hold the
    hook payloads privately. An existing file is left as it is (``doctor`` warns)."""
    path = sqlite_path(url)
    if path is not None:
        create_private(path)


def create_database(url: str, *, pool_size: int = 10) -> Database:
    """A mautrix ``Database`` over asyncpg or aiosqlite; ``start()`` applies migrations."""
    create_private_sqlite(url)
    use_bridge_connections()
    # SQLite in WAL mode: a few connections let a hook's INSERT run while delivery reads or
    # writes on another, instead of queueing behind it for the pool's single connection.
    args: dict[str, object] = {
        "min_size": SQLITE_CONNECTIONS,
        "init_commands": [f"PRAGMA {pragma}" for pragma in CONNECTION_PRAGMAS],
    }
    if url.startswith("postgres"):
        args = {
            "min_size": 1,
            "max_size": pool_size,
            # mautrix would sys.exit(26) on an asyncpg InternalClientError; the pool replaces a
            # broken connection by itself, and callers retry or answer 503/500 meanwhile.
            "meow_exit_on_ice": False,
            # Fail a connection attempt to an unreachable server fast (asyncpg waits 60 s), so
            # a hook gets its 503 while the shim's timeout still allows spooling.
            "timeout": 5,
        }
    return Database.create(
        url,
        upgrade_table=build_upgrade_table(load_migrations()),
        db_args=args,
        log=mau_logger("db"),
        owner_name="claude-bridge",
    )


async def ping(db: Database) -> None:
    """One round trip: raises if the database cannot answer."""
    await db.fetchval("SELECT 1")


async def schema_version(db: Database) -> int:
    return int(await db.fetchval("SELECT version FROM schema_version") or 0)
