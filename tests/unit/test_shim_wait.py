"""``claude-bridge-hook wait``, run as a real process against a small HTTP server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from claude_bridge import installer
from tests.unit.test_shim import REPO, TOKEN, free_port, run_command

SESSION = "3eb5f21d-5dcb-43a8-9ab8-939331f73b6b"
STOP = json.dumps({"session_id": SESSION, "hook_event_name": "Stop"}).encode()


@dataclass
class FakeWaitEndpoint:
    """Answers each long-poll from ``answers`` in order, then 204s."""

    port: int
    answers: list[tuple[int, dict[str, object] | None]] = field(default_factory=list)
    polls: list[web.Request] = field(default_factory=list)
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.polls.append(request)
        status, body = self.answers.pop(0) if self.answers else (204, None)
        if body is None:
            return web.Response(status=status)
        return web.json_response(body, status=status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/claude/v1/sessions/{session_id}/wait", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def endpoint() -> AsyncIterator[FakeWaitEndpoint]:
    fake = FakeWaitEndpoint(free_port())
    yield fake
    await fake.stop()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"CLAUDE_BRIDGE_TOKEN": TOKEN, "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}


def waiter(url: str, *args: str, poll: str | None = None) -> list[str]:
    extra = ["--poll", poll] if poll else []
    return [sys.executable, "-m", "claude_bridge.shim", "--url", url, *args, "wait", *extra]


WAKE: dict[str, object] = {
    "messages": [{"sender": "@alice:x", "body": "hi"}],
    "text": "Message from @alice:x: hi",
}


async def test_wakes_with_the_messages_on_stderr(
    endpoint: FakeWaitEndpoint, env: dict[str, str]
) -> None:
    await endpoint.start()
    endpoint.answers = [(204, None), (200, WAKE)]

    run = await run_command(waiter(endpoint.url, "--timeout", "30"), STOP, env)

    assert (run.rc, run.stdout, run.stderr) == (2, b"", "Message from @alice:x: hi\n")
    first, second = endpoint.polls
    assert first.match_info["session_id"] == SESSION
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert first.query["since"] == second.query["since"]  # one waiter, one identity
    assert 0 < float(first.query["timeout"]) <= 30


async def test_superseded_or_refused_exits_quietly(
    endpoint: FakeWaitEndpoint, env: dict[str, str]
) -> None:
    await endpoint.start()
    for n, status in enumerate((410, 403, 404), start=1):
        endpoint.answers = [(status, {"error": "no"})]
        # Its timeout is far beyond run_command's 60 s: only the refusal can end it in time.
        run = await run_command(waiter(endpoint.url, "--timeout", "600"), STOP, env)
        assert (run.rc, run.stdout, run.stderr) == (0, b"", "")
        assert len(endpoint.polls) == n  # one poll, answered with the refusal, and no other


async def test_a_bridge_out_of_slots_is_waited_for_not_given_up_on(
    endpoint: FakeWaitEndpoint, env: dict[str, str]
) -> None:
    """503 with ``retry_after`` (every held-connection slot taken) is a busy bridge, not a
    failing one: the waiter waits as told, past ``--give-up``, and polls again."""
    await endpoint.start()
    full = {"error": "the bridge holds 10 connections open already", "retry_after": 1}
    endpoint.answers = [(503, full), (503, full), (200, WAKE)]
    argv = waiter(endpoint.url, "--timeout", "30")
    run = await run_command([*argv, "--give-up", "0.5"], STOP, env)
    assert (run.rc, run.stderr) == (2, "Message from @alice:x: hi\n")
    assert len(endpoint.polls) == 3


async def test_keeps_waiting_while_the_bridge_restarts(
    endpoint: FakeWaitEndpoint, env: dict[str, str]
) -> None:
    endpoint.answers = [(200, WAKE)]
    tried = asyncio.Event()

    async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tried.set()  # a bridge going down: the connection is dropped without an answer
        writer.close()

    down = await asyncio.start_server(hang_up, "127.0.0.1", endpoint.port)
    proc = asyncio.create_task(run_command(waiter(endpoint.url, "--timeout", "30"), STOP, env))
    await asyncio.wait_for(tried.wait(), 30)
    down.close()
    await down.wait_closed()
    await endpoint.start()
    run = await asyncio.wait_for(proc, 60)
    assert (run.rc, run.stderr) == (2, "Message from @alice:x: hi\n")


async def test_gives_up_at_its_timeout(endpoint: FakeWaitEndpoint, env: dict[str, str]) -> None:
    await endpoint.start()
    run = await run_command(waiter(endpoint.url, "--timeout", "1", poll="0.3"), STOP, env)
    assert (run.rc, run.stdout, run.stderr) == (0, b"", "")
    # Polled while its second lasted (a 204 each time, every 0.3 s), then no more.
    assert 1 <= len(endpoint.polls) <= 1 / 0.3 + 2


async def test_without_a_session_or_url_does_nothing(env: dict[str, str]) -> None:
    run = await run_command(waiter("http://127.0.0.1:9", "--timeout", "5"), b"{}", env)
    assert (run.rc, run.stdout, run.stderr) == (0, b"", "")


async def test_the_installed_waiter_command_runs(
    endpoint: FakeWaitEndpoint, env: dict[str, str], tmp_path: Path
) -> None:
    await endpoint.start()
    endpoint.answers = [(200, WAKE)]
    settings = tmp_path / "settings.json"
    installer.install(
        settings,
        url=endpoint.url,
        hook_command=f"{shlex.quote(sys.executable)} -m claude_bridge.shim",
    )
    [group] = json.loads(settings.read_text())["hooks"]["Stop"]
    command = next(h["command"] for h in group["hooks"] if h.get("asyncRewake"))

    run = await run_command(["sh", "-c", command], STOP, env)

    assert (run.rc, run.stderr) == (2, "Message from @alice:x: hi\n")


async def test_the_default_installed_waiter_runs_isolated(
    endpoint: FakeWaitEndpoint, tmp_path: Path
) -> None:
    """The command a personal install writes (python -I -S, no PYTHONPATH needed) goes through
    argparse for ``wait`` and hands Claude the text as UTF-8 whatever the locale."""
    await endpoint.start()
    text = "Message from @zoë:x: ça va? 🙂"
    endpoint.answers = [(204, None), (200, {**WAKE, "text": text})]
    settings = tmp_path / "settings.json"
    installer.install(
        settings, url=endpoint.url, hook_command=installer.default_hook_command(False)
    )
    [group] = json.loads(settings.read_text())["hooks"]["Stop"]
    command = next(h["command"] for h in group["hooks"] if h.get("asyncRewake"))
    assert command.startswith(shlex.join(installer.fast_shim_argv()))
    env = {"CLAUDE_BRIDGE_TOKEN": TOKEN, "PATH": "/usr/bin:/bin", "LC_ALL": "C"}

    run = await run_command(["sh", "-c", command], STOP, env, cwd=tmp_path)

    assert (run.rc, run.stdout, run.stderr) == (2, b"", f"{text}\n")
    assert [p.headers["Authorization"] for p in endpoint.polls] == [f"Bearer {TOKEN}"] * 2


async def test_an_unattended_session_is_not_waited_for(
    endpoint: FakeWaitEndpoint, env: dict[str, str]
) -> None:
    """``claude -p`` marks its hooks unattended and would hold its exit for the waiter."""
    await endpoint.start()
    endpoint.answers = [(200, WAKE)]
    unattended = {**env, "CLAUDE_CODE_SESSION_ATTENDED": "0"}
    run = await run_command(waiter(endpoint.url, "--timeout", "30"), STOP, unattended)
    assert (run.rc, run.stdout, run.stderr) == (0, b"", "")
    assert endpoint.polls == []  # the message stays queued for the session's next hook

    attended = {**env, "CLAUDE_CODE_SESSION_ATTENDED": "1"}
    run = await run_command(waiter(endpoint.url, "--timeout", "30"), STOP, attended)
    assert (run.rc, run.stderr) == (2, "Message from @alice:x: hi\n")


async def test_gives_up_when_the_bridge_stays_unreachable(
    endpoint: FakeWaitEndpoint, env: dict[str, str]
) -> None:
    """A stopped bridge is not polled for the rest of the hour: ``--give-up`` seconds after the
    first failed attempt the waiter stops (it tried again meanwhile)."""
    tries = 0

    async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal tries
        tries += 1
        writer.close()

    down = await asyncio.start_server(hang_up, "127.0.0.1", endpoint.port)
    try:
        argv = waiter(endpoint.url, "--timeout", "3000")
        run = await run_command([*argv, "--give-up", "2"], STOP, env)
    finally:
        down.close()
        await down.wait_closed()
    assert (run.rc, run.stdout, run.stderr) == (0, b"", "")
    assert tries >= 2


def _is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def _until_gone(pid: int, limit: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while _is_running(pid):
        assert loop.time() < deadline, f"waiter {pid} still running after {limit}s"
        await asyncio.sleep(0.05)


async def _until_polling(endpoint: FakeWaitEndpoint, limit: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not endpoint.polls:
        assert loop.time() < deadline, "the waiter never polled"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("channel", ["socket", "pipe"])
async def test_exits_when_its_claude_code_hangs_up(
    endpoint: FakeWaitEndpoint, env: dict[str, str], channel: str
) -> None:
    """Claude Code killed: the other ends of the waiter's stdout and stderr close (Claude Code
    hands hooks sockets; pipes behave alike). The waiter ends instead of polling on."""
    await endpoint.start()
    if channel == "socket":
        ours, theirs = zip(socket.socketpair(), socket.socketpair(), strict=True)
        child_fds = [s.fileno() for s in theirs]
    else:
        pipes = [os.pipe(), os.pipe()]
        child_fds = [w for _, w in pipes]
    proc = await asyncio.create_subprocess_exec(
        *waiter(endpoint.url, "--timeout", "3000", poll="0.5"),
        stdin=asyncio.subprocess.PIPE,
        stdout=child_fds[0],
        stderr=child_fds[1],
        env=env,
        cwd=REPO,
    )
    assert proc.stdin
    proc.stdin.write(STOP)
    proc.stdin.close()
    try:
        if channel == "socket":
            for sock in theirs:
                sock.close()
        else:
            for fd in child_fds:
                os.close(fd)
        await _until_polling(endpoint)
        assert proc.returncode is None  # alive while its Claude Code is
        if channel == "socket":
            for sock in ours:
                sock.close()
        else:
            for read_end, _ in pipes:
                os.close(read_end)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_exits_when_its_parent_is_gone(
    endpoint: FakeWaitEndpoint, env: dict[str, str], tmp_path: Path
) -> None:
    """Started by a process that dies (a Claude Code that exec'd it through a shell, killed):
    reparented, the waiter ends even while its output channels stay open."""
    await endpoint.start()
    stop = tmp_path / "stop.json"
    stop.write_bytes(STOP)
    command = shlex.join(waiter(endpoint.url, "--timeout", "3000", poll="0.5"))
    parent = await asyncio.create_subprocess_exec(
        "sh",
        "-c",
        f"{command} < {shlex.quote(str(stop))} & echo $!; exec sleep 3000",
        stdout=asyncio.subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    assert parent.stdout
    pid = int(await asyncio.wait_for(parent.stdout.readline(), 30))
    try:
        await _until_polling(endpoint)
        assert _is_running(pid)
        parent.kill()
        await parent.wait()
        await _until_gone(pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def test_the_waiter_prunes_old_files_at_most_once_a_day(
    endpoint: FakeWaitEndpoint, env: dict[str, str], tmp_path: Path
) -> None:
    """Session folders of files from Matrix untouched for ``CLAUDE_BRIDGE_FILES_KEEP_DAYS`` go,
    fresh ones stay; the stamp in the root keeps it to once a day (a waiter starts every turn)."""
    from claude_bridge import host_files

    await endpoint.start()
    root = tmp_path / "cache" / "claude-bridge" / "attachments"
    env = env | {"XDG_CACHE_HOME": str(tmp_path / "cache"), host_files.KEEP_DAYS_ENV: "3"}

    def folder(name: str, days: float) -> Path:
        path = host_files.host_path(str(root), name, 1, "a.png")
        host_files.write_file(str(root), path, b"x")
        past = os.stat(path).st_mtime - days * 86400
        os.utime(os.path.dirname(path), (past, past))
        return Path(path).parent

    old, fresh = folder("old", 4), folder("fresh", 2)
    endpoint.answers = [(410, {"error": "superseded"})]
    run = await run_command(waiter(endpoint.url, "--timeout", "600"), STOP, env)
    assert (run.rc, run.stderr) == (0, "")
    assert not old.exists() and fresh.exists() and (root / host_files.STAMP).is_file()
    later = folder("later", 4)
    endpoint.answers = [(410, {"error": "superseded"})]
    run = await run_command(waiter(endpoint.url, "--timeout", "600"), STOP, env)
    assert (run.rc, run.stderr) == (0, "")
    assert later.exists()  # pruned today already


def test_a_poll_the_bridge_held_shorter_than_asked_is_not_early() -> None:
    """``--poll`` is 600 s, while configs written before hold 300 s at most (``max_wait``): a
    204 at 300 s is a poll that ran out, polled again at once, not a stopping bridge to back
    off from; a 204 at once still is."""
    from claude_bridge.shim import EARLY_ANSWER, WAIT_POLL, answered_early

    assert not answered_early(300.0, WAIT_POLL)
    assert not answered_early(299.9, WAIT_POLL)
    assert not answered_early(EARLY_ANSWER, WAIT_POLL)
    assert answered_early(0.01, WAIT_POLL)
    assert answered_early(EARLY_ANSWER - 0.1, WAIT_POLL)
    # Short polls (tests, --poll 1) keep the half-the-poll rule.
    assert answered_early(0.1, 0.3) and not answered_early(0.2, 0.3)
