"""The command shim, run as a real process against a small real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import socket
import stat
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from claude_bridge import installer

REPO = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-hook-token-value-0123456789"


def event(n: int, name: str = "PostToolUse") -> bytes:
    """A hook input as Claude Code sends it (one line of JSON); ``n`` makes each one unique."""
    return json.dumps(
        {
            "session_id": "3eb5f21d-5dcb-43a8-9ab8-939331f73b6b",
            "transcript_path": "/home/dev/.claude/projects/x/3eb5f21d.jsonl",
            "cwd": "/home/dev/projects/demo-app",
            "hook_event_name": name,
            "tool_name": "Bash",
            "tool_input": {"command": f"echo {n}"},
            "tool_use_id": f"toolu_{n:04d}",
        }
    ).encode()


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]


@dataclass
class FakeBridge:
    """Records every POST; answers from ``responses`` (in order), then ``default``."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    responses: list[tuple[int, bytes]] = field(default_factory=list)
    default: tuple[int, bytes] = (200, b"{}")
    delay: float = 0.0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(await request.read(), dict(request.headers)))
        if self.delay:
            try:
                await asyncio.wait_for(self.release.wait(), self.delay)
            except TimeoutError:
                pass
        status, body = self.responses.pop(0) if self.responses else self.default
        return web.Response(status=status, body=body, content_type="application/json")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(installer.HOOK_PATH, self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def bodies(self) -> list[bytes]:
        return [r.body for r in self.received]


def free_port() -> int:
    """A loopback port with nothing listening (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def bridge() -> AsyncIterator[FakeBridge]:
    fake = FakeBridge(port=free_port())  # not started: tests start it when the bridge is "up"
    yield fake
    await fake.stop()


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def env(spool: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_BRIDGE_")}
    e.update(CLAUDE_BRIDGE_SPOOL=str(spool), CLAUDE_BRIDGE_TOKEN=TOKEN, PYTHONPATH=str(REPO))
    return e


@dataclass
class Run:
    rc: int
    stdout: bytes
    stderr: str
    seconds: float


async def shim(body: bytes, url: str, env: dict[str, str], *args: str) -> Run:
    return await run_command(
        [sys.executable, "-m", "claude_bridge.shim", "--url", url, *args], body, env
    )


async def run_command(argv: list[str], body: bytes, env: dict[str, str]) -> Run:
    start = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    out, err = await asyncio.wait_for(proc.communicate(body), 60)
    assert proc.returncode is not None
    return Run(proc.returncode, out, err.decode(), time.monotonic() - start)


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def spooled(spool: Path) -> list[str]:
    return [name for name in listing(spool) if name.endswith(".json")]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_bridge_down_spools_prints_empty_answer_and_exits_0_fast(
    bridge: FakeBridge, spool: Path, env: dict[str, str]
) -> None:
    run = await shim(event(1), bridge.url, env)  # nothing listens on bridge.port

    assert run.rc == 0
    assert run.stdout == b"{}"
    assert run.seconds < 3
    assert "spooled" in run.stderr
    [name] = spooled(spool)
    assert (spool / name).read_bytes() == event(1)
    assert mode(spool / name) == 0o600
    assert mode(spool) == 0o700
    assert not [p for p in listing(spool) if p.endswith(".tmp")]
    assert TOKEN not in run.stderr


async def test_bridge_up_drains_spool_in_order_then_sends_current(
    bridge: FakeBridge, spool: Path, env: dict[str, str]
) -> None:
    for n in range(3):
        assert (await shim(event(n), bridge.url, env)).stdout == b"{}"
    assert len(spooled(spool)) == 3

    await bridge.start()
    bridge.responses = [(200, b"{}")] * 3 + [(200, b'{"continue": true}')]
    run = await shim(event(3), bridge.url, env)

    assert run.rc == 0
    assert run.stdout == b'{"continue": true}'  # only the current event's answer is printed
    assert bridge.bodies == [event(0), event(1), event(2), event(3)]
    assert [r.headers.get("X-Claude-Bridge-Spooled") for r in bridge.received] == [
        "1",
        "1",
        "1",
        None,
    ]
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in bridge.received)
    assert spooled(spool) == []

    await shim(event(4), bridge.url, env)
    assert bridge.bodies == [event(n) for n in range(5)]  # nothing sent twice


async def test_answer_is_printed_verbatim(
    bridge: FakeBridge, spool: Path, env: dict[str, str]
) -> None:
    await bridge.start()
    answer = (
        '{ "hookSpecificOutput": {"hookEventName": "PreToolUse",\n'
        '  "permissionDecision": "deny", "permissionDecisionReason": "nein – 🙅"} }'
    ).encode()
    bridge.default = (200, answer)

    run = await shim(event(1, "PreToolUse"), bridge.url, env)

    assert run.stdout == answer
    assert bridge.received[0].headers["Content-Type"] == "application/json"
    assert spooled(spool) == []


async def test_temporary_error_spools_and_next_call_replays(
    bridge: FakeBridge, spool: Path, env: dict[str, str]
) -> None:
    await bridge.start()
    bridge.responses = [(503, b'{"error": "database unavailable"}')]

    first = await shim(event(1), bridge.url, env)
    assert (first.rc, first.stdout) == (0, b"{}")
    assert len(spooled(spool)) == 1

    second = await shim(event(2), bridge.url, env)
    assert second.stdout == b"{}"
    assert bridge.bodies == [event(1), event(1), event(2)]  # 503'd, replayed, current
    assert spooled(spool) == []


async def test_permanent_error_on_spooled_event_moves_it_to_rejected(
    bridge: FakeBridge, spool: Path, env: dict[str, str]
) -> None:
    await shim(event(1), bridge.url, env)
    await shim(event(2), bridge.url, env)
    [bad, _good] = spooled(spool)

    await bridge.start()
    bridge.responses = [(400, b'{"error": "bad input"}')]
    run = await shim(event(3), bridge.url, env)

    assert run.stdout == b"{}"
    assert bridge.bodies == [event(1), event(2), event(3)]
    assert spooled(spool) == []
    assert (spool / "rejected" / bad).read_bytes() == event(1)
    error = (spool / "rejected" / f"{bad}.error").read_text()
    assert "HTTP 400" in error and "bad input" in error

    await shim(event(4), bridge.url, env)
    assert bridge.bodies == [event(1), event(2), event(3), event(4)]  # never retried


async def test_permanent_error_on_current_event_is_not_spooled(
    bridge: FakeBridge, spool: Path, env: dict[str, str]
) -> None:
    await bridge.start()
    bridge.responses = [(401, b'{"error": "bad token"}'), (422, b"{}")]

    for n in (1, 2):
        run = await shim(event(n), bridge.url, env)
        assert (run.rc, run.stdout) == (0, b"{}")
        assert "refused" in run.stderr
    assert spooled(spool) == []


async def test_timeout_is_bounded_and_event_is_spooled_as_maybe_delivered(
    bridge: FakeBridge, spool: Path, env: dict[str, str]
) -> None:
    await bridge.start()
    bridge.delay = 30

    run = await shim(event(1, "PermissionRequest"), bridge.url, env, "--timeout", "1")

    assert (run.rc, run.stdout) == (0, b"{}")
    assert run.seconds < 4
    [name] = spooled(spool)
    assert name.endswith(".sent.json")

    bridge.delay = 0
    bridge.release.set()
    await shim(event(2), bridge.url, env)
    replay = bridge.received[1]
    assert replay.body == event(1, "PermissionRequest")
    assert replay.headers["X-Claude-Bridge-Spooled"] == "maybe-delivered"
    assert bridge.bodies[2] == event(2)


async def test_spooled_events_never_overtaken_while_bridge_stays_down(
    bridge: FakeBridge, spool: Path, env: dict[str, str]
) -> None:
    for n in range(5):
        await shim(event(n), bridge.url, env)
    files = spooled(spool)
    assert [(spool / f).read_bytes() for f in files] == [event(n) for n in range(5)]


async def test_concurrent_shims_send_each_spooled_event_exactly_once(
    bridge: FakeBridge, spool: Path, env: dict[str, str]
) -> None:
    backlog = [event(n) for n in range(12)]
    for body in backlog:
        await shim(body, bridge.url, env)
    await bridge.start()
    bridge.delay = 0.15  # the first drainer holds the lock longer than the others wait for it

    currents = [event(100 + n) for n in range(4)]
    runs = await asyncio.gather(*(shim(body, bridge.url, env) for body in currents))
    assert all(r.rc == 0 for r in runs)
    await shim(event(999), bridge.url, env)  # flushes anything queued behind a busy lock

    bodies = bridge.bodies
    for body in [*backlog, *currents, event(999)]:
        assert bodies.count(body) == 1
    assert [b for b in bodies if b in backlog] == backlog  # the backlog kept its order
    assert spooled(spool) == []


async def test_bad_arguments_fail_open(bridge: FakeBridge, env: dict[str, str]) -> None:
    run = await shim(event(1), bridge.url, env, "--no-such-flag")
    assert (run.rc, run.stdout) == (0, b"{}")
    assert "usage error" in run.stderr


async def test_no_url_fails_open(env: dict[str, str]) -> None:
    run = await run_command([sys.executable, "-m", "claude_bridge.shim"], event(1), env)
    assert (run.rc, run.stdout) == (0, b"{}")
    assert "no bridge URL" in run.stderr


async def test_url_and_token_env_from_flags_and_environment(
    bridge: FakeBridge, env: dict[str, str]
) -> None:
    await bridge.start()
    env = {**env, "CLAUDE_BRIDGE_URL": bridge.url, "OTHER_TOKEN": "other-secret"}
    argv = [sys.executable, "-m", "claude_bridge.shim", "--token-env", "OTHER_TOKEN", "send"]

    run = await run_command(argv, event(1), env)

    assert run.stdout == b"{}"
    assert bridge.received[0].headers["Authorization"] == "Bearer other-secret"


async def test_installed_command_hook_runs_the_shim(
    bridge: FakeBridge, tmp_path: Path, env: dict[str, str]
) -> None:
    """What install-hooks writes is a working shell command (as Claude Code runs it: sh -c)."""
    await bridge.start()
    bridge.default = (200, b'{"decision": "block", "reason": "keep going"}')
    settings = tmp_path / "settings.json"
    installer.install(
        settings,
        url=bridge.url,
        durable=True,
        hook_command=f"{shlex.quote(sys.executable)} -m claude_bridge.shim",
    )
    [group] = json.loads(settings.read_text())["hooks"]["Stop"]
    command = group["hooks"][0]["command"]

    run = await run_command(["sh", "-c", command], event(1, "Stop"), env)

    assert run.stdout == b'{"decision": "block", "reason": "keep going"}'
    assert bridge.bodies == [event(1, "Stop")]


def test_shim_imports_only_the_standard_library() -> None:
    """The shim starts once per hook event: no pydantic, aiohttp or bridge modules."""
    import subprocess

    probe = (
        "import sys; before = set(sys.modules); import claude_bridge.shim; "
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ).stdout.split()
    ours = {"claude_bridge", "claude_bridge.shim"}
    foreign = [m for m in out if m not in ours and m.split(".")[0] not in sys.stdlib_module_names]
    assert foreign == []
    assert not [m for m in out if m.startswith("claude_bridge.") and m not in ours]
