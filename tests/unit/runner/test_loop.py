"""The poll loop against a small in-test stand-in of the bridge's poll endpoint (the real one is
exercised end to end in tests/e2e/test_runner.py), with real tmux on a private server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from claude_bridge.devenv.synapse import free_port
from claude_bridge.runner.config import RunnerConfig
from claude_bridge.runner.jobs import Executor
from claude_bridge.runner.loop import (
    EXIT_UNAUTHORIZED,
    INSTANCE_HEADER,
    POLL_PATH,
    Backoff,
    PollLoop,
)
from tests.unit.runner.conftest import eventually, screen
from tests.unit.runner.test_jobs import SID, job


class FakeBridge:
    """Hands out jobs until their results come back; answers with forced statuses first."""

    def __init__(self) -> None:
        self.port = free_port()
        self.jobs: list[dict[str, Any]] = []
        self.done: dict[str, dict[str, Any]] = {}
        self.bodies: list[dict[str, Any]] = []
        self.forced: list[int] = []
        self.exits: list[dict[str, Any]] = []
        self.instances: list[str | None] = []
        self.changed = asyncio.Condition()
        self._queued = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, new: dict[str, Any]) -> None:
        self.jobs.append(new)
        self._queued.set()

    async def poll(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer secret-token-1234567890":
            return web.json_response({"error": "bad token"}, status=401)
        body = await request.json()
        forced = self.forced.pop(0) if self.forced else None
        async with self.changed:
            self.bodies.append(body)
            self.instances.append(request.headers.get(INSTANCE_HEADER))
            if forced is None:
                for result in body["results"]:
                    self.done.setdefault(result["job_id"], result)
                self.exits += body["exits"]
            self.changed.notify_all()
        if forced is not None:
            return web.json_response({"error": "forced"}, status=forced)
        self._queued.clear()
        pending = [j for j in self.jobs if j["id"] not in self.done]
        if not pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queued.wait(), body["wait"])
            pending = [j for j in self.jobs if j["id"] not in self.done]
        return web.json_response({"jobs": pending})

    async def until(self, check: Callable[[], bool], timeout: float = 20) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(check)


@pytest.fixture
async def bridge() -> AsyncIterator[FakeBridge]:
    fake = FakeBridge()
    app = web.Application()
    app.router.add_post(POLL_PATH, fake.poll)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", fake.port).start()
    yield fake
    await runner.cleanup()


@pytest.fixture
async def running(
    bridge: FakeBridge,
    config: RunnerConfig,
    make: Callable[[], Executor],
) -> AsyncIterator[PollLoop]:
    config.url = bridge.url
    ex = make()
    await ex.sessions.refresh()
    async with aiohttp.ClientSession() as http:
        loop = PollLoop(config, ex, ex.sessions, http, watch_interval=0.1)
        loop.backoff = Backoff(first=0.01, cap=0.05)
        task = asyncio.create_task(loop.run())
        loop.task = task  # type: ignore[attr-defined]
        yield loop
        loop.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


async def test_new_then_end_results_sessions_and_the_exit(
    bridge: FakeBridge, running: PollLoop
) -> None:
    tmux = running.executor.tmux
    bridge.add(job("new", id="n1", prompt="hello"))
    await bridge.until(lambda: "n1" in bridge.done)
    assert bridge.done["n1"] == {"job_id": "n1", "ok": True, "error": None}
    await bridge.until(lambda: any(b["sessions"] for b in bridge.bodies))
    body = next(b for b in bridge.bodies if b["sessions"])
    assert body["host"] == "laptop" and body["projects"] == ["api"]
    directory = str(running.config.projects["api"])
    assert body["project_dirs"] == {"api": directory} and directory.startswith("/")
    assert body["sessions"] == [
        {
            "session_id": SID,
            "project": "api",
            "tmux": "claude-api-0b6c2a53",
            "job_id": "n1",
            "state": "running",
        }
    ]
    await screen(tmux, running.sessions.live[SID].pane_id, "CWD")
    bridge.add(job("end", id="e1"))
    # the exit cuts the 25 s wait short: it arrives well before the poll would have ended
    await bridge.until(lambda: bool(bridge.exits), timeout=10)
    (gone,) = bridge.exits
    assert (gone["session_id"], gone["status"]) == (SID, 0)
    assert "LINE:/exit" in gone["tail"]

    async def killed() -> bool:  # once the bridge had the exit
        return not await tmux.panes()

    await eventually(killed)
    await bridge.until(lambda: not bridge.bodies[-1]["sessions"] and not bridge.bodies[-1]["exits"])


async def test_results_are_sent_again_until_a_poll_carrying_them_succeeds(
    bridge: FakeBridge, running: PollLoop
) -> None:
    await bridge.until(lambda: bool(bridge.bodies))  # the first poll waits
    bridge.forced += [503, 500]  # the next two: those carrying the result
    bridge.add(job("interrupt", id="i1"))  # refused: no such session
    await bridge.until(lambda: "i1" in bridge.done)
    carrying = [b for b in bridge.bodies if b["results"]]
    assert len(carrying) >= 2  # once refused, then again
    assert bridge.done["i1"]["ok"] is False
    assert "not running on laptop" in bridge.done["i1"]["error"]


async def test_a_bridge_that_is_down_is_retried(
    config: RunnerConfig,
    make: Callable[[], Executor],
) -> None:
    fake = FakeBridge()
    config.url = fake.url
    ex = make()
    async with aiohttp.ClientSession() as http:
        loop = PollLoop(config, ex, ex.sessions, http, watch_interval=0.1)
        loop.backoff = Backoff(first=0.01, cap=0.05)
        task = asyncio.create_task(loop.run())

        async def failed_thrice() -> bool:
            return loop.backoff.failures >= 3

        await eventually(failed_thrice)
        app = web.Application()
        app.router.add_post(POLL_PATH, fake.poll)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", fake.port).start()
        try:
            fake.add(job("interrupt", id="i1"))
            await fake.until(lambda: "i1" in fake.done)
        finally:
            loop.stop()
            await asyncio.wait_for(task, 10)
            await runner.cleanup()


async def test_a_refused_token_ends_the_runner(bridge: FakeBridge, running: PollLoop) -> None:
    bridge.forced.append(401)
    bridge.add(job("interrupt", id="wake"))  # ends the current wait
    assert await asyncio.wait_for(running.task, 10) == EXIT_UNAUTHORIZED  # type: ignore[attr-defined]


async def test_while_another_instance_holds_the_host_the_runner_waits_and_retries(
    bridge: FakeBridge, running: PollLoop
) -> None:
    """409: another runner process is bound to (token, host) (an old one within its window):
    this one does not exit (systemd would not restart it), it retries until it is let in."""
    bridge.forced += [409, 409, 409]
    bridge.add(job("interrupt", id="i1"))
    await bridge.until(lambda: "i1" in bridge.done)
    assert not running.task.done()  # type: ignore[attr-defined]
    assert len(bridge.instances) >= 4


async def test_one_instance_id_per_process_never_given_to_the_sessions(
    bridge: FakeBridge, running: PollLoop, config: RunnerConfig, make: Callable[[], Executor]
) -> None:
    bridge.add(job("interrupt", id="i1"))
    await bridge.until(lambda: "i1" in bridge.done)
    [instance] = set(bridge.instances)
    assert instance and len(instance) >= 32
    assert instance not in running.executor.env.values()
    for path in config.state_dir.rglob("*"):
        if path.is_file():
            assert instance.encode() not in path.read_bytes(), path
    async with aiohttp.ClientSession() as http:
        other = PollLoop(config, make(), running.sessions, http)
        assert other.headers()[INSTANCE_HEADER] != instance  # a restart is another instance


async def test_a_clean_stop_releases_the_host(bridge: FakeBridge, running: PollLoop) -> None:
    bridge.add(job("interrupt", id="i1"))
    await bridge.until(lambda: "i1" in bridge.done)
    instance = bridge.instances[-1]
    running.stop()
    assert await asyncio.wait_for(running.task, 10) == 0  # type: ignore[attr-defined]
    assert bridge.bodies[-1]["release"] is True and bridge.bodies[-1]["wait"] == 0
    assert bridge.instances[-1] == instance


async def test_another_token_is_refused(bridge: FakeBridge, running: PollLoop) -> None:
    running.config.token = "someone-else"
    bridge.add(job("interrupt", id="wake"))
    assert await asyncio.wait_for(running.task, 10) == EXIT_UNAUTHORIZED  # type: ignore[attr-defined]
