"""The ``thread`` table: one Claude Code session ↔ one Matrix room and its ghost."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any

from mautrix.util.async_db import Database

from claude_bridge.ids import SessionID, ThreadID, thread_id_for
from claude_bridge.store.database import now_ms

_COLUMNS = (
    "id, session_id, room_id, ghost_mxid, alias, project_path, project_name, title, token_name, "
    "status, created_at, updated_at, space_linked_at, activity"
)


@dataclass
class Thread:
    id: ThreadID
    session_id: SessionID
    ghost_mxid: str
    alias: str
    room_id: str | None = None
    project_path: str | None = None
    project_name: str | None = None
    title: str | None = None
    token_name: str | None = None
    status: str = "active"
    created_at: int = 0
    updated_at: int = 0
    space_linked_at: int | None = None
    """When the room was put into its project's space (or found to have no project to go in)."""
    activity: str | None = None
    """Where the session stands as its room last said (``room_state``); None: not known."""

    @classmethod
    def _from_row(cls, row: Any) -> Thread:
        return cls(
            id=ThreadID(row["id"]),
            session_id=SessionID(row["session_id"]),
            room_id=row["room_id"],
            ghost_mxid=row["ghost_mxid"],
            alias=row["alias"],
            project_path=row["project_path"],
            project_name=row["project_name"],
            title=row["title"],
            token_name=row["token_name"],
            status=row["status"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            space_linked_at=row["space_linked_at"],
            activity=row["activity"],
        )


class ThreadCollision(Exception):
    """Two session ids map to one thread id (they differ only in case)."""


class ThreadStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def ensure(self, thread: Thread) -> Thread:
        """Insert the thread unless it exists; return the stored row. Safe under concurrency."""
        now = now_ms()
        await self.db.execute(
            f"INSERT INTO thread ({_COLUMNS}) VALUES "
            "($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14) "
            "ON CONFLICT DO NOTHING",
            thread.id,
            thread.session_id,
            thread.room_id,
            thread.ghost_mxid,
            thread.alias,
            thread.project_path,
            thread.project_name,
            thread.title,
            thread.token_name,
            thread.status,
            now,
            now,
            thread.space_linked_at,
            thread.activity,
        )
        stored = await self.get(thread.id)
        if stored is None or stored.session_id != thread.session_id:
            raise ThreadCollision(f"session {thread.session_id!r} collides with thread {thread.id}")
        return stored

    async def get(self, thread_id: str) -> Thread | None:
        row = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM thread WHERE id=$1", thread_id)
        return Thread._from_row(row) if row else None

    async def for_session(self, session_id: str) -> Thread | None:
        """The session's thread: by its id, or by session id for a thread stored before its
        session id mapped to another thread id (``-agent`` escaped, ids.py)."""
        found = await self.get(thread_id_for(session_id))
        if found is not None:
            return found
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM thread WHERE session_id=$1", session_id
        )
        return Thread._from_row(row) if row else None

    async def get_by_room(self, room_id: str) -> Thread | None:
        row = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM thread WHERE room_id=$1", room_id)
        return Thread._from_row(row) if row else None

    async def list(self, limit: int = 100, offset: int = 0) -> list[Thread]:
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM thread ORDER BY updated_at DESC, id LIMIT $1 OFFSET $2",
            limit,
            offset,
        )
        return [Thread._from_row(r) for r in rows]

    async def search(
        self,
        *,
        owner: str | None = None,
        project_like: str | None = None,
        status: str | None = None,
        text_like: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[Thread]:
        """Threads matching every filter given, newest first. ``*_like`` are lower-case LIKE
        patterns (``\\`` escapes); ``text_like`` is tried on title, project, session and id."""
        where: builtins.list[str] = []
        args: builtins.list[Any] = []
        if owner is not None:
            args.append(owner)
            where.append(f"token_name = ${len(args)}")
        if project_like:
            args.append(project_like)
            n = len(args)
            where.append(
                f"(LOWER(COALESCE(project_name, '')) LIKE ${n} ESCAPE '\\' "
                f"OR LOWER(COALESCE(project_path, '')) LIKE ${n} ESCAPE '\\')"
            )
        if status:
            args.append(status)
            where.append(f"status = ${len(args)}")
        if text_like:
            args.append(text_like)
            n = len(args)
            cols = ("title", "project_name", "project_path", "session_id", "id")
            where.append(
                "("
                + " OR ".join(f"LOWER(COALESCE({c}, '')) LIKE ${n} ESCAPE '\\'" for c in cols)
                + ")"
            )
        args += [limit, offset]
        sql = (
            f"SELECT {_COLUMNS} FROM thread"
            + (" WHERE " + " AND ".join(where) if where else "")
            + f" ORDER BY updated_at DESC, id LIMIT ${len(args) - 1} OFFSET ${len(args)}"
        )
        return [Thread._from_row(r) for r in await self.db.fetch(sql, *args)]

    async def set_room(self, thread_id: str, room_id: str, activity: str | None = None) -> None:
        await self.db.execute(
            "UPDATE thread SET room_id=$2, activity=$3, updated_at=$4 WHERE id=$1",
            thread_id,
            room_id,
            activity,
            now_ms(),
        )

    async def learn_project_path(self, thread_id: str, path: str) -> bool:
        """The session's directory, for a thread made without it (a host runner's ``new``
        before its first hook); True when this call recorded it. A known one never changes."""
        done = await self.db.fetchval(
            "UPDATE thread SET project_path=$2 WHERE id=$1 AND project_path IS NULL RETURNING 1",
            thread_id,
            path,
        )
        return bool(done)

    async def set_space_linked(self, thread_id: str) -> int:
        at = now_ms()
        await self.db.execute("UPDATE thread SET space_linked_at=$2 WHERE id=$1", thread_id, at)
        return at

    async def set_status(self, thread_id: str, status: str, activity: str | None = None) -> None:
        """The session's status (active, ended, archived) and, when given, where it stands."""
        await self.db.execute(
            "UPDATE thread SET status=$2, activity=COALESCE($3, activity), updated_at=$4 "
            "WHERE id=$1",
            thread_id,
            status,
            activity,
            now_ms(),
        )

    async def set_title(self, thread_id: str, title: str) -> None:
        await self.db.execute(
            "UPDATE thread SET title=$2, updated_at=$3 WHERE id=$1", thread_id, title, now_ms()
        )

    async def touch(self, thread_id: str) -> None:
        await self.db.execute("UPDATE thread SET updated_at=$2 WHERE id=$1", thread_id, now_ms())

    async def count_active(self) -> int:
        """Threads whose session has not ended."""
        return int(await self.db.fetchval("SELECT COUNT(*) FROM thread WHERE status <> 'ended'"))

    # Ownership: ``token_name`` is the hook token that opened the thread (its owner).

    async def count_owned(self, owner: str) -> int:
        return int(await self.db.fetchval("SELECT COUNT(*) FROM thread WHERE token_name=$1", owner))

    async def owners(self) -> dict[str | None, builtins.list[ThreadID]]:
        """Every owner with its threads' ids (``None``: threads no token owns)."""
        rows = await self.db.fetch("SELECT token_name, id FROM thread ORDER BY token_name, id")
        found: dict[str | None, builtins.list[ThreadID]] = {}
        for r in rows:
            found.setdefault(r["token_name"], []).append(ThreadID(r["id"]))
        return found

    async def give_to(self, old_owner: str, new_owner: str) -> builtins.list[ThreadID]:
        """A renamed token keeps its threads: move them from the old name; their ids."""
        rows = await self.db.fetch(
            "UPDATE thread SET token_name=$2 WHERE token_name=$1 RETURNING id",
            old_owner,
            new_owner,
        )
        return [ThreadID(r["id"]) for r in rows]
