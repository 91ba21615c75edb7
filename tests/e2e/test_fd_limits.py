"""Issue 17, §2: the bridge out of file descriptors answers 503 and stays up.

The bridge runs as a process whose ``RLIMIT_NOFILE`` is set low, soft and hard (``preexec``), so
it cannot raise it. It says at start-up how many held connections that allows; the test opens
more background-waiter long-polls than that: the extra ones are answered 503 with Retry-After,
a PermissionRequest too (nothing stored), while ``/health`` and ordinary hooks still answer.
Then plain TCP connections take the last descriptors: the accept loop meets EMFILE (asyncio's
logs it and pauses; uvloop's, the default, closes the connections it cannot keep), and the
process stays up and serves ``/health`` again once they close.

The store does not matter here (SQLite; the limit is the process's, not the database's).
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.processes import (
    HOOK_TOKEN,
    BridgeProcess,
    FaultStack,
    fault_stack,
    prompt_payload,
    until,
)

pytestmark = pytest.mark.e2e

LIMIT = 256
AUTH = {"Authorization": f"Bearer {HOOK_TOKEN}"}


def low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


@pytest.fixture(scope="module")
async def hs(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FaultStack]:
    async with fault_stack(tmp_path_factory.mktemp("fd-limits")) as stack:
        yield stack


def permission_request(session_id: str) -> dict[str, object]:
    return {
        "session_id": session_id,
        "transcript_path": f"/home/dev/.claude/projects/demo/{session_id}.jsonl",
        "cwd": "/home/dev/projects/demo-app",
        "permission_mode": "default",
        "hook_event_name": "PermissionRequest",
        "tool_name": "Bash",
        "tool_input": {"command": "rm -rf build"},
    }


async def test_out_of_descriptors_answers_503_and_stays_up(hs: FaultStack, tmp_path: Path) -> None:
    config = hs.bridge_config(f"sqlite:{tmp_path / 'bridge.db'}")
    bridge = await BridgeProcess(config, tmp_path, preexec=low_fd_limit).start()
    url = bridge.hook_url
    session_id = str(uuid.uuid4())
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    raw: list[socket.socket] = []
    async with aiohttp.ClientSession(connector=connector, headers=AUTH) as http:
        try:
            await bridge.wait_ready()
            line = json.loads(await bridge.wait_for_log("file-descriptor limit"))
            cap = line["held_connections"]
            assert (line["soft"], line["hard"]) == (LIMIT, LIMIT)  # it could not raise it
            assert 0 < cap < LIMIT
            async with http.post(
                f"{url}/claude/v1/hooks", json=prompt_payload(session_id, "hello")
            ) as r:
                assert r.status == 200

            # More waiters than the cap allows: the extra ones are refused, not queued.
            wait_url = f"{url}/claude/v1/sessions/{session_id}/wait?timeout=600&since=1"
            answered: list[tuple[int, str | None]] = []

            async def wait() -> None:
                async with http.get(wait_url) as r:
                    answered.append((r.status, r.headers.get("Retry-After")))

            extra = 10
            waiters = [asyncio.create_task(wait()) for _ in range(cap + extra)]

            async def refused() -> bool:
                return len(answered) >= extra

            await until(refused, "the extra waiters' 503s")
            await asyncio.sleep(0.5)  # nothing more than the extra ones comes back
            assert answered == [(503, "30")] * extra

            # A permission request would hold a connection too: 503, Retry-After, not stored.
            async with http.post(
                f"{url}/claude/v1/hooks", json=permission_request(session_id)
            ) as r:
                assert r.status == 503 and r.headers["Retry-After"] == "30"
                assert "held" in (await r.json())["error"]
            # What does not hold a connection still works.
            async with http.get(f"{url}/health") as r:
                assert r.status == 200
            async with http.post(
                f"{url}/claude/v1/hooks", json=prompt_payload(session_id, "still here")
            ) as r:
                assert r.status == 200

            # Now plain connections take every descriptor left: accept() fails with EMFILE.
            host, port = config["hooks"]["listen"].rsplit(":", 1)
            for _ in range(LIMIT):
                s = socket.socket()
                s.setblocking(False)
                try:
                    s.connect((host, int(port)))
                except BlockingIOError:
                    pass
                raw.append(s)
            ready = json.loads(bridge.logged("bridge ready")[0])
            if ready["event_loop"] == "asyncio":  # it logs, pauses accepting for 1 s, retries
                await bridge.wait_for_log("out of system resource", timeout=30)
            else:  # libuv accepts what it has no descriptor for and closes it at once
                await until(lambda: _closed_by_peer(raw), "a connection past the limit closed")
            assert bridge.returncode is None

            for s in raw:
                s.close()
            raw.clear()
            for task in waiters:
                task.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

            async def healthy() -> bool:
                try:
                    async with http.get(f"{url}/health") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await until(healthy, "/health answering again after the descriptors were freed")
            assert bridge.returncode is None

            # And the slots come back once the bridge notices the waiters' clients are gone.
            async def slot_free() -> bool:
                async with http.get(wait_url.replace("timeout=600", "timeout=0.1")) as r:
                    return r.status == 204

            await until(slot_free, "held-connection slots given back after the clients left")
        finally:
            for s in raw:
                s.close()
            await bridge.close()


async def _closed_by_peer(sockets: list[socket.socket]) -> bool:
    """Whether the bridge's side closed any of ``sockets`` (EOF or a reset on a read)."""
    for s in sockets:
        try:
            if s.recv(1) == b"":
                return True
        except (BlockingIOError, InterruptedError):
            continue
        except ConnectionError:  # reset, or refused
            return True
        except OSError:  # not connected yet (the backlog was full): nothing to tell
            continue
    return False
