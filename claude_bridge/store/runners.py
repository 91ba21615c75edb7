"""The ``runners`` table: the host runners (issue 15) as they last reported themselves.

A runner is (hook token name, host). Each poll writes what it announced: the projects it may
start sessions in (their directories are kept in memory only, ``control/runners.py``), whom it accepts jobs from, its session limit, the live sessions it runs, its
poll's ``wait`` and when it was last seen (a poll started or ended). Whether it is online now is
the caller's question (``control/runners.py``): this table only remembers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mautrix.util.async_db import Database

from claude_bridge.store.database import now_ms

_COLUMNS = "token_name, host, projects, accept_from, max_sessions, sessions, wait, last_seen"


@dataclass(frozen=True)
class RunnerSession:
    session_id: str
    project: str
    tmux: str
    job_id: str | None = None
    state: str = "running"

    def as_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "project": self.project,
            "tmux": self.tmux,
            "job_id": self.job_id,
            "state": self.state,
        }


@dataclass(frozen=True)
class Runner:
    token_name: str
    host: str
    projects: list[str]
    accept_from: list[str] | None
    max_sessions: int | None
    sessions: list[RunnerSession] = field(default_factory=list)
    wait: int = 25
    last_seen: int = 0
    project_dirs: dict[str, str] = field(default_factory=dict, compare=False)
    """Each project's directory on the host, as its last poll said (kept in memory only: a
    runner announces them with every poll)."""

    def session(self, session_id: str) -> RunnerSession | None:
        return next((s for s in self.sessions if s.session_id == session_id), None)

    def accepts(self, user_id: str) -> bool:
        return self.accept_from is None or user_id in self.accept_from

    @classmethod
    def _from_row(cls, r: Any) -> Runner:
        accept = r["accept_from"]
        return cls(
            token_name=r["token_name"],
            host=r["host"],
            projects=list(json.loads(r["projects"])),
            accept_from=list(json.loads(accept)) if accept is not None else None,
            max_sessions=r["max_sessions"],
            sessions=[RunnerSession(**s) for s in json.loads(r["sessions"])],
            wait=r["wait"],
            last_seen=r["last_seen"],
        )


class RunnerStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(self, runner: Runner) -> None:
        """Record what a poll announced (insert or replace); ``last_seen`` is now."""
        await self.db.execute(
            f"INSERT INTO runners ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
            "ON CONFLICT (token_name, host) DO UPDATE SET projects=excluded.projects, "
            "accept_from=excluded.accept_from, max_sessions=excluded.max_sessions, "
            "sessions=excluded.sessions, wait=excluded.wait, last_seen=excluded.last_seen",
            runner.token_name,
            runner.host,
            json.dumps(runner.projects),
            json.dumps(runner.accept_from) if runner.accept_from is not None else None,
            runner.max_sessions,
            json.dumps([s.as_json() for s in runner.sessions]),
            runner.wait,
            now_ms(),
        )

    async def seen(self, token_name: str, host: str) -> None:
        """A poll of the runner ended now."""
        await self.db.execute(
            "UPDATE runners SET last_seen=$3 WHERE token_name=$1 AND host=$2",
            token_name,
            host,
            now_ms(),
        )

    async def get(self, token_name: str, host: str) -> Runner | None:
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM runners WHERE token_name=$1 AND host=$2", token_name, host
        )
        return Runner._from_row(row) if row else None

    async def all(self) -> list[Runner]:
        rows = await self.db.fetch(f"SELECT {_COLUMNS} FROM runners ORDER BY host, token_name")
        return [Runner._from_row(r) for r in rows]
