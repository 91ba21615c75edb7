"""A minimal host runner for the tests: it only speaks the poll endpoint (issue 15), as
``claude-bridge runner`` does, and keeps what it was handed. The real runner, with tmux and the
real Claude Code CLI, is tested in its own files."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.e2e.conftest import HOOK_TOKEN
from tests.e2e.test_foundation import _until

POLL = "/claude/v1/runner/poll"
ARRIVAL_LIMIT = 90.0
"""How long a sent message may take to reach the bridge. Synapse pushes it in a transaction, and
one that failed (its shared appservice address had no listener between two tests) marks the
appservice down: later events then wait for its recoverer, whose backoff (2, 4, 8, 16, 32 … s)
a loaded machine can stretch past a poll's 20 s."""


async def reached(bridge: Any, event_id: str) -> None:
    """Wait until the bridge has the Matrix message ``event_id`` in its inbox: the homeserver's
    part is done, and what the bridge does next (type it at once) is what a poll then checks."""

    async def stored() -> bool:
        row = "SELECT 1 FROM session_message WHERE event_id=$1"
        return bool(await bridge.db.fetchval(row, event_id))

    await _until(stored, f"message {event_id} to reach the bridge", ARRIVAL_LIMIT)


class Poller:
    def __init__(
        self,
        url: str,
        *,
        host: str = "laptop",
        token: str = HOOK_TOKEN,
        projects: list[str] | None = None,
        accept_from: list[str] | None = None,
    ) -> None:
        self.url = url
        self.host = host
        self.token = token
        self.projects = ["api", "web"] if projects is None else projects
        self.accept_from = accept_from
        self.sessions: list[dict[str, Any]] = []
        self.headers: dict[str, str] = {}
        self.http = aiohttp.ClientSession()

    def body(self, **fields: Any) -> dict[str, Any]:
        return {
            "host": self.host,
            "projects": self.projects,
            "max_sessions": 4,
            "accept_from": self.accept_from,
            "sessions": self.sessions,
            "results": [],
            "exits": [],
            "wait": 0,
            **fields,
        }

    async def raw(
        self, body: Any, *, token: str | None = None, data: bytes | None = None
    ) -> tuple[int, Any]:
        tok = self.token if token is None else token
        headers = {**self.headers, **({"Authorization": f"Bearer {tok}"} if tok else {})}
        kwargs: dict[str, Any] = {"data": data} if data is not None else {"json": body}
        async with self.http.post(self.url + POLL, headers=headers, **kwargs) as resp:
            return resp.status, await resp.json(content_type=None)

    async def poll(self, **fields: Any) -> list[dict[str, Any]]:
        """One poll; its jobs (asserting a 200)."""
        status, answer = await self.raw(self.body(**fields))
        assert status == 200, answer
        return list(answer["jobs"])

    async def settle(self, job: dict[str, Any], ok: bool = True, error: str | None = None) -> None:
        await self.poll(results=[{"job_id": job["id"], "ok": ok, "error": error}])

    async def fetch(self, path: str) -> tuple[int, bytes]:
        """GET a path of the bridge with the runner's token (a file a job names)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.http.get(self.url + path, headers=headers) as resp:
            return resp.status, await resp.read()

    async def close(self) -> None:
        await self.http.close()
