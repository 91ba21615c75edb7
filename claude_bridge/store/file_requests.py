"""The ``file_request`` table: ``!claude file`` requests not yet answered (migration 19).

A request is written before the command is answered and deleted when the host's answer came or
the request expired, so one outstanding when the bridge stops is offered again after the restart
(``control/file_requests.py``) instead of being lost with the process.
"""

from __future__ import annotations

from dataclasses import dataclass

from mautrix.util.async_db import Database

_COLUMNS = "id, thread_id, path, root, by_user, room_id, event_id, asked_at"


@dataclass
class StoredFileRequest:
    id: str
    thread_id: str
    path: str
    root: str
    by_user: str
    room_id: str
    event_id: str
    asked_at: int
    """Milliseconds since the epoch: the request expires a fixed time after it."""


class FileRequestStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, request: StoredFileRequest) -> None:
        await self.db.execute(
            f"INSERT INTO file_request ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            request.id,
            request.thread_id,
            request.path,
            request.root,
            request.by_user,
            request.room_id,
            request.event_id,
            request.asked_at,
        )

    async def remove(self, request_id: str) -> None:
        await self.db.execute("DELETE FROM file_request WHERE id=$1", request_id)

    async def outstanding(self) -> list[StoredFileRequest]:
        rows = await self.db.fetch(f"SELECT {_COLUMNS} FROM file_request ORDER BY asked_at, id")
        return [StoredFileRequest(**dict(row)) for row in rows]
