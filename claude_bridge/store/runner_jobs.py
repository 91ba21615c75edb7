"""The ``runner_jobs`` table: what the bridge asked a host runner to do (issue 15).

A job is committed before the Matrix command that asked for it is answered, and handed to its
runner — and only to it: (token name, host) — in every poll answer until the runner's result
comes back (``queued`` → ``sent`` → ``done`` | ``failed``). The runner makes running a job twice
harmless; the bridge never hands one job to another runner.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mautrix.util.async_db import Database

from claude_bridge.store.database import now_ms
from claude_bridge.store.runners import Runner
from claude_bridge.store.threads import Thread

QUEUED, SENT, DONE, FAILED = "queued", "sent", "done", "failed"
OPEN = (QUEUED, SENT)
EXIT = "exit"
"""The kind of the rows that record a session exit already reported (never sent)."""

_COLUMNS = (
    "id, token_name, host, kind, project, session_id, prompt, text, requested_by, room_id, "
    "origin_room, origin_event, state, error, created_at, updated_at, files"
)


@dataclass(frozen=True)
class RunnerJob:
    id: str
    token_name: str
    host: str
    kind: str
    session_id: str
    requested_by: str
    project: str | None = None
    prompt: str | None = None
    text: str | None = None
    room_id: str | None = None
    origin_room: str | None = None
    origin_event: str | None = None
    state: str = QUEUED
    error: str | None = None
    created_at: int = 0
    updated_at: int = 0
    files: str | None = None
    """``type``: JSON list of the files the runner fetches before typing ({id, name, path})."""

    @classmethod
    def for_session(
        cls, runner: Runner, thread: Thread, kind: str, *, id: str, requested_by: str, **fields: Any
    ) -> RunnerJob:
        """A job (or record) of ``runner`` about ``thread``'s session, answered in its room: who
        runs it and which session it is about, said once for every place that builds one."""
        return cls(
            id=id,
            token_name=runner.token_name,
            host=runner.host,
            kind=kind,
            session_id=thread.session_id,
            requested_by=requested_by,
            room_id=thread.room_id,
            **fields,
        )

    def wire(self) -> dict[str, Any]:
        """The job as the runner gets it (``openapi.yaml``: RunnerJob)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "project": self.project,
            "session_id": self.session_id,
            "prompt": self.prompt,
            "text": self.text,
            "requested_by": self.requested_by,
            "room_id": self.room_id,
            "files": json.loads(self.files) if self.files else [],
        }

    @classmethod
    def _from_row(cls, r: Any) -> RunnerJob:
        return cls(**{c.strip(): r[c.strip()] for c in _COLUMNS.split(",")})


class RunnerJobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, job: RunnerJob) -> bool:
        """Store a new job (False: that id exists already, nothing changed)."""
        now = now_ms()
        inserted = await self.db.fetchval(
            f"INSERT INTO runner_jobs ({_COLUMNS}) VALUES "
            "($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17) "
            "ON CONFLICT DO NOTHING RETURNING id",
            job.id,
            job.token_name,
            job.host,
            job.kind,
            job.project,
            job.session_id,
            job.prompt,
            job.text,
            job.requested_by,
            job.room_id,
            job.origin_room,
            job.origin_event,
            job.state,
            job.error,
            now,
            now,
            job.files,
        )
        return inserted is not None

    async def get(self, job_id: str) -> RunnerJob | None:
        row = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM runner_jobs WHERE id=$1", job_id)
        return RunnerJob._from_row(row) if row else None

    async def open_for(self, token_name: str, host: str, limit: int = 100) -> list[RunnerJob]:
        """The runner's jobs without a result yet, oldest first."""
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM runner_jobs WHERE token_name=$1 AND host=$2 "
            "AND state IN ('queued', 'sent') ORDER BY created_at, id LIMIT $3",
            token_name,
            host,
            limit,
        )
        return [RunnerJob._from_row(r) for r in rows]

    async def mark_sent(self, job_ids: list[str]) -> set[str]:
        """Mark queued jobs handed out; the ids marked now. One withdrawn meanwhile
        (``withdraw_queued``) is not among them, and must not be handed out."""
        now = now_ms()
        marked = set()
        for job_id in job_ids:
            row = await self.db.fetchval(
                "UPDATE runner_jobs SET state='sent', updated_at=$2 WHERE id=$1 "
                "AND state='queued' RETURNING id",
                job_id,
                now,
            )
            if row is not None:
                marked.add(job_id)
        return marked

    async def finish(
        self, job_id: str, token_name: str, host: str, ok: bool, error: str | None
    ) -> RunnerJob | None:
        """Record the runner's result: the job, if this call settled it (a result for a job of
        another runner, or one settled before, changes nothing and returns None)."""
        row = await self.db.fetchrow(
            f"UPDATE runner_jobs SET state=$4, error=$5, updated_at=$6 WHERE id=$1 "
            "AND token_name=$2 AND host=$3 AND state IN ('queued', 'sent') "
            f"RETURNING {_COLUMNS}",
            job_id,
            token_name,
            host,
            DONE if ok else FAILED,
            error,
            now_ms(),
        )
        return RunnerJob._from_row(row) if row else None

    async def withdraw_queued(self, job_id: str) -> bool:
        """Take back a job its runner was never handed (still ``queued``): False when a poll
        took it meanwhile. The row goes, so the same job id can be queued again later."""
        gone = await self.db.fetchval(
            "DELETE FROM runner_jobs WHERE id=$1 AND state='queued' RETURNING id", job_id
        )
        return gone is not None

    async def note_open(self, job_id: str, note: str) -> bool:
        """Note on an open job that has none yet (True: noted now, by this call); the runner's
        result replaces it. Remembers across restarts that something was said about it."""
        noted = await self.db.fetchval(
            "UPDATE runner_jobs SET error=$2 WHERE id=$1 AND state IN ('queued', 'sent') "
            "AND error IS NULL RETURNING id",
            job_id,
            note,
        )
        return noted is not None

    async def open_kind(self, session_id: str, kind: str) -> RunnerJob | None:
        """An open job of ``kind`` for the session, if any."""
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM runner_jobs WHERE session_id=$1 AND kind=$2 "
            "AND state IN ('queued', 'sent') ORDER BY created_at LIMIT 1",
            session_id,
            kind,
        )
        return RunnerJob._from_row(row) if row else None

    async def last_launch(self, session_id: str) -> RunnerJob | None:
        """The latest ``new`` or ``resume`` job of the session: the host it runs on."""
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM runner_jobs WHERE session_id=$1 "
            "AND kind IN ('new', 'resume') ORDER BY created_at DESC, id DESC LIMIT 1",
            session_id,
        )
        return RunnerJob._from_row(row) if row else None

    async def recent(self, kind: str, since: int) -> list[RunnerJob]:
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM runner_jobs WHERE kind=$1 AND created_at >= $2 "
            "ORDER BY created_at, id",
            kind,
            since,
        )
        return [RunnerJob._from_row(r) for r in rows]
