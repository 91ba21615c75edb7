"""The hook INSERT, run on the event loop itself (SQLite only).

Through aiosqlite every statement is two thread hand-offs (queue it to the connection's thread,
wake the loop with the result), after waiting for a free pooled connection. Measured with 50
sessions under delivery load, those waits were most of the hook acknowledgements slower than
5 ms: a worker thread waiting up to the interpreter's 5 ms switch interval for the GIL, the loop
waiting to be woken, every pooled connection busy with delivery's reads.

The one statement Claude Code waits on can run on the loop because nothing in it waits: in WAL
mode with ``synchronous = NORMAL`` a commit writes to the page cache only, checkpoints run in the
background (``checkpoints.py``), and with ``busy_timeout = 0`` a write lock that another
connection holds is an immediate ``SQLITE_BUSY`` — the caller then takes the pool's way, which
waits in a thread. It costs about a tenth of a millisecond of loop time.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from mautrix.util.async_db import Database, Scheme
from mautrix.util.async_db import aiosqlite as mautrix_sqlite

from claude_bridge.store.sqlite import CONNECTION_PRAGMAS, busy, placeholders


class LoopWriter:
    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def for_database(cls, db: Database) -> LoopWriter | None:
        return cls(db.url.path) if db.scheme == Scheme.SQLITE else None

    def fetchval(self, query: str, *args: Any) -> tuple[bool, Any]:
        """``(True, first column of the first row)``, or ``(False, None)`` when the statement
        would have to wait: another connection holds the write lock, or a transaction of this
        task's is open on a pooled connection (the statement belongs in it)."""
        if mautrix_sqlite.in_transaction.get():
            return False, None
        conn = self._connect()
        try:
            rows = conn.execute(placeholders(query), args).fetchall()
        except sqlite3.OperationalError as e:
            if busy(e):
                return False, None
            raise
        return True, rows[0][0] if rows else None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None)
            for pragma in CONNECTION_PRAGMAS:
                conn.execute(f"PRAGMA {pragma}")
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
