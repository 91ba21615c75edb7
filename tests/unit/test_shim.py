"""The command shim, run as a real process against a small real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import stat
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from claude_bridge import installer
from claude_bridge import shim as shim_module
from claude_bridge.devenv.synapse import free_port

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

    answered: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(await request.read(), dict(request.headers)))
        if self.delay:
            try:
                await asyncio.wait_for(self.release.wait(), self.delay)
            except TimeoutError:
                pass
        status, body = self.responses.pop(0) if self.responses else self.default
        self.answered += 1
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


async def shim(body: bytes, url: str, env: dict[str, str], *args: str) -> Run:
    return await run_command(
        [sys.executable, "-m", "claude_bridge.shim", "--url", url, *args], body, env
    )


async def run_command(
    argv: list[str], body: bytes, env: dict[str, str], *, cwd: Path = REPO
) -> Run:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    out, err = await asyncio.wait_for(proc.communicate(body), 60)
    assert proc.returncode is not None
    return Run(proc.returncode, out, err.decode())


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
    bridge.delay = 600  # far beyond any wait of this test: only the shim's timeout ends the call

    run = await shim(event(1, "PermissionRequest"), bridge.url, env, "--timeout", "1")

    assert (run.rc, run.stdout) == (0, b"{}")
    assert len(bridge.received) == 1 and bridge.answered == 0  # it gave up; the bridge still holds
    [name] = spooled(spool)
    assert name.endswith(".sent.json")

    bridge.delay = 0
    bridge.release.set()
    await shim(event(2), bridge.url, env)
    replay = bridge.received[1]
    assert replay.body == event(1, "PermissionRequest")
    assert replay.headers["X-Claude-Bridge-Spooled"] == "maybe-delivered"
    assert bridge.bodies[2] == event(2)


KEY = "Idempotency-Key"


def plant(spool: Path, name: str, body: bytes) -> None:
    spool.mkdir(mode=0o700, exist_ok=True)
    (spool / name).write_bytes(body)


async def test_every_event_carries_its_own_key_and_a_replay_the_same_one(
    bridge: FakeBridge, spool: Path, env: dict[str, str]
) -> None:
    await bridge.start()
    bridge.responses = [(503, b'{"error": "database unavailable"}')]
    same = event(1, "Notification")

    await shim(same, bridge.url, env)  # 503: spooled under its key
    [name] = spooled(spool)
    await shim(same, bridge.url, env)  # the replay, then the same bytes again as a new event

    first, replay, second = bridge.received
    assert first.body == replay.body == second.body == same
    assert replay.headers["X-Claude-Bridge-Spooled"] == "1"
    assert first.headers[KEY] == replay.headers[KEY]  # one event: one key, kept in the file name
    assert first.headers[KEY] in name
    assert second.headers[KEY] != first.headers[KEY]  # byte-identical, yet another event
    assert all(len(r.headers[KEY]) == 32 for r in bridge.received)


async def test_a_file_spooled_before_keys_existed_is_replayed_without_one(
    bridge: FakeBridge, spool: Path, env: dict[str, str]
) -> None:
    plant(spool, "00000000000000000001-0000042-001.sent.json", event(1))
    await bridge.start()

    await shim(event(2), bridge.url, env)

    old, current = bridge.received
    assert old.body == event(1) and old.headers["X-Claude-Bridge-Spooled"] == "maybe-delivered"
    assert KEY not in old.headers
    assert KEY in current.headers


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


# --- the fast path: the installed command, its imports, its own HTTP client ---------------------

LIGHT = {"_socket", "claude_bridge", "claude_bridge.shim", "__future__"}
"""All the fast path may import beyond what ``python -I -S -c pass`` starts with."""


def fast_command(url: str, *args: str) -> list[str]:
    """What ``install-hooks`` writes into a personal settings file, as an argv."""
    return [*installer.fast_shim_argv(), "--url", url, *args]


def imported(importtime_stderr: str) -> set[str]:
    return {
        line.rpartition("|")[2].strip()
        for line in importtime_stderr.splitlines()
        if line.startswith("import time:") and "imported package" not in line
    }


@pytest.mark.parametrize("form", ["installed", "script"])
async def test_fast_path_imports_nothing_heavy(
    form: str, bridge: FakeBridge, spool: Path, env: dict[str, str]
) -> None:
    """A regression here (argparse, http.client, socket, os, urllib.parse, re via the idna codec…)
    costs milliseconds on every hook event."""
    await bridge.start()
    bridge.default = (200, b'{"continue": true}')
    if form == "installed":
        python, *flags = installer.fast_shim_argv()
    else:
        python, *flags = [sys.executable, "-I", "-S", str(REPO / "claude_bridge" / "shim.py")]
    argv = [python, "-X", "importtime", *flags, "--url", bridge.url, "--timeout", "8"]

    run = await run_command(argv, event(1), env)

    assert (run.rc, run.stdout) == (0, b'{"continue": true}')
    assert bridge.bodies == [event(1)] and spooled(spool) == []
    baseline = await run_command([python, "-X", "importtime", "-I", "-S", "-c", "pass"], b"", env)
    assert baseline.rc == 0
    extra = imported(run.stderr) - imported(baseline.stderr)
    assert extra <= LIGHT, sorted(extra - LIGHT)
    assert "_socket" in extra  # the probe sees the shim's own imports


def test_installed_command_lines_take_the_fast_parser() -> None:
    """Every ``send`` command install-hooks writes is read without argparse; ``wait`` is not."""
    for token_env in (installer.DEFAULT_TOKEN_ENV, "OTHER_TOKEN"):
        groups = installer.desired_hooks(
            url="http://127.0.0.1:29341/prefix",
            token_env=token_env,
            durable=True,
            hook_command=shlex.join(installer.fast_shim_argv()),
            claude_version=(9, 0, 0),
        )
        for group in groups.values():
            for handler in group["hooks"]:
                argv = shlex.split(handler["command"])
                assert argv[:5] == installer.fast_shim_argv()
                args = shim_module.parse_fast(argv[5:])
                if handler.get("asyncRewake"):
                    assert args is None and argv[-1] == "wait"
                    continue
                assert args is not None
                assert (args.command, args.url, args.token_env, args.spool_dir) == (
                    "send",
                    "http://127.0.0.1:29341/prefix",
                    token_env,
                    None,
                )
                assert args.timeout == handler["timeout"] - installer.SHIM_MARGIN


ARGVS = [
    [],
    ["send"],
    ["--url", "http://x"],
    ["--url=http://x", "send"],
    ["--timeout", "3.5", "--url", "u", "--token-env", "T", "--spool-dir", "/s"],
    ["--timeout=inf"],
    ["--timeout", " 2 "],
    ["--timeout", "1_000"],
    ["--timeout", "-1"],
    ["--timeout", "abc"],
    ["--timeout="],
    ["--url"],
    ["--url", "--timeout", "3"],
    ["--url", "-x"],
    ["--url=-x"],
    ["--ur", "x"],
    ["--url", "a", "--url", "b"],
    ["--url=", "send"],
    ["--url", ""],
    ["--url=a=b"],
    ["--url", "send"],
    ["send", "--url", "x"],
    ["--url", "x", "send", "send"],
    ["wait"],
    ["--url", "x", "wait", "--poll", "3"],
    ["--no-such-flag"],
    ["--", "send"],
    ["x"],
    [""],
]


@pytest.mark.parametrize("argv", ARGVS, ids=[" ".join(a) or "(none)" for a in ARGVS])
def test_fast_parser_reads_what_argparse_reads(argv: list[str]) -> None:
    """parse_fast either declines (argparse decides) or reads exactly what argparse reads."""
    fast = shim_module.parse_fast(argv)
    try:
        slow: shim_module.Args | None = shim_module.build_parser().parse_args(
            argv, namespace=shim_module.Args()
        )
    except shim_module._UsageError:
        slow = None
    if fast is not None:
        assert slow is not None
        assert repr(vars(fast)) == repr(vars(slow))


def test_fast_parser_takes_the_common_command_lines() -> None:
    for argv in ARGVS[:8]:
        assert shim_module.parse_fast(argv) is not None, argv
    for argv in ([], ["send"]):
        args = shim_module.parse_fast(argv)
        assert args is not None
        assert (args.url, args.token_env, args.timeout, args.spool_dir) == (
            None,
            shim_module.DEFAULT_TOKEN_ENV,
            shim_module.DEFAULT_TIMEOUT,
            None,
        )


def test_urls_are_read_as_urlsplit_reads_them() -> None:
    import urllib.parse

    for url in [
        "http://127.0.0.1:29341",
        "http://127.0.0.1:29341/",
        "HTTP://Bridge.Example:8080/prefix/?x=1#frag",
        "https://user:pw@host.example/p",
        "http://h#frag",
        "http://h?q=1",
        "http://[::1]:8080/x",
        "http://[::1]/",
        "http://host:/p",
        "http://h:0",
        "  http://h/claude/v1/hooks  ",
    ]:
        parts = urllib.parse.urlsplit(url.strip())
        assert shim_module.split_url(url) == (
            parts.scheme,
            parts.hostname,
            parts.port,
            parts.path,
        ), url
    for bad in [
        "ftp://h",
        "http://",
        "http:///p",
        "h:80",
        "/claude",
        "http://h:99999",
        "http://h:x/",
        "http://h:٣/",
        "http://h/a b",
        "http://h/a\nb",
        "http://h/a\x7fb",
        "http://h\t/",
    ]:
        with pytest.raises(ValueError):
            shim_module.split_url(bad)
    assert shim_module.HookEndpoint("http://h/claude/v1/hooks/", None).path == "/claude/v1/hooks"
    assert shim_module.HookEndpoint("http://h/pre/", None).path == "/pre/claude/v1/hooks"
    assert shim_module.HookEndpoint("http://h", None).path == "/claude/v1/hooks"


@dataclass
class RawServer:
    """Loopback HTTP at the byte level: records each request, answers ``response`` verbatim
    (one byte every ``trickle`` seconds if set), then closes."""

    response: bytes = b""
    trickle: float = 0.0
    requests: list[bytes] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    """Bytes of the answer written so far, per request."""
    server: asyncio.Server | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            self.requests.append(head + await reader.readexactly(length))
            n = len(self.sent)
            self.sent.append(0)
            chunks = [bytes([b]) for b in self.response] if self.trickle else [self.response]
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
                self.sent[n] += len(chunk)
                await asyncio.sleep(self.trickle)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.tasks.discard(task)

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


@pytest.fixture
async def raw() -> AsyncIterator[RawServer]:
    server = RawServer()
    await server.start()
    yield server
    await server.stop()


RAW_ANSWERS = {
    "content-length": (
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 8\r\n\r\n{"a": 1}',
        b'{"a": 1}',
    ),
    "chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5;ext=1\r\n{"b":\r\n3\r\n 2}\r\n0\r\nX-Trailer: t\r\n\r\n',
        b'{"b": 2}',
    ),
    "until close": (
        b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"c": 3}',
        b'{"c": 3}',
    ),
    "interim 100 first": (
        b'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{"d": 4}',
        b'{"d": 4}',
    ),
    "bare LF, header case": (b'HTTP/1.1 200 OK\ncontent-LENGTH:  8\n\n{"e": 5}extra', b'{"e": 5}'),
    "204": (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
}


@pytest.mark.parametrize("answer", RAW_ANSWERS.values(), ids=list(RAW_ANSWERS))
async def test_fast_client_reads_http_answers(
    answer: tuple[bytes, bytes], raw: RawServer, spool: Path, env: dict[str, str]
) -> None:
    raw.response, expected = answer

    run = await run_command(fast_command(raw.url, "--timeout", "8"), event(1), env)

    assert (run.rc, run.stdout, run.stderr) == (0, expected, "")
    assert spooled(spool) == []
    [request] = raw.requests
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /claude/v1/hooks HTTP/1.1"
    port = raw.url.rpartition(":")[2]
    for header in (
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        "Connection: close",
        f"Authorization: Bearer {TOKEN}",
        f"Content-Length: {len(event(1))}",
    ):
        assert header.encode() in lines
    assert not [line for line in lines if line.startswith(b"X-Claude-Bridge-Spooled")]
    assert body == event(1)


BROKEN_ANSWERS = {
    "closed without an answer": b"",
    "not HTTP": b"hello\r\n\r\n",
    "body cut short": b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{}",
    "chunked body cut short": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{}",
    "head cut short": b"HTTP/1.1 200 OK\r\nContent-Len",
    "bad Content-Length": b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\n{}",
}


@pytest.mark.parametrize("response", BROKEN_ANSWERS.values(), ids=list(BROKEN_ANSWERS))
async def test_broken_answer_spools_the_event_as_maybe_delivered(
    response: bytes, raw: RawServer, spool: Path, env: dict[str, str]
) -> None:
    raw.response = response

    run = await run_command(fast_command(raw.url), event(1), env)

    assert (run.rc, run.stdout) == (0, b"{}")
    assert "no answer" in run.stderr
    [name] = spooled(spool)
    assert name.endswith(".sent.json") and (spool / name).read_bytes() == event(1)

    raw.response = RAW_ANSWERS["content-length"][0]
    await run_command(fast_command(raw.url), event(2), env)
    assert b"X-Claude-Bridge-Spooled: maybe-delivered\r\n" in raw.requests[1]
    assert raw.requests[1].endswith(event(1)) and raw.requests[2].endswith(event(2))
    assert spooled(spool) == []


async def test_temporary_error_in_chunks_spools_without_maybe(
    raw: RawServer, spool: Path, env: dict[str, str]
) -> None:
    raw.response = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    run = await run_command(fast_command(raw.url), event(1), env)
    assert (run.rc, run.stdout) == (0, b"{}")
    assert "HTTP 503" in run.stderr
    [name] = spooled(spool)
    assert not name.endswith(".sent.json")


async def test_timeout_bounds_the_whole_answer_not_each_read(
    raw: RawServer, spool: Path, env: dict[str, str]
) -> None:
    """A server dripping its answer a byte at a time can't stretch the call past --timeout."""
    body = b'{"a": "' + b"x" * 3000 + b'"}'
    raw.response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    raw.trickle = 0.1  # ~5 min for the whole answer, each byte well within any per-read timeout

    run = await run_command(fast_command(raw.url, "--timeout", "1"), event(1), env)

    assert (run.rc, run.stdout) == (0, b"{}")
    assert 0 < raw.sent[0] < len(raw.response)  # it gave up while the answer was still dripping
    [name] = spooled(spool)
    assert name.endswith(".sent.json")


async def test_token_that_would_split_a_header_is_refused_and_never_logged(
    raw: RawServer, spool: Path, env: dict[str, str]
) -> None:
    env = {**env, "CLAUDE_BRIDGE_TOKEN": f"{TOKEN}\r\nX-Injected: 1"}
    run = await run_command(fast_command(raw.url), event(1), env)

    assert (run.rc, run.stdout) == (0, b"{}")
    assert raw.requests == []
    assert "hook token" in run.stderr
    assert TOKEN not in run.stderr


async def test_https_bridge_unreachable_spools(spool: Path, env: dict[str, str]) -> None:
    """https:// goes through http.client (imported only then); its failures spool the same."""
    run = await run_command(
        fast_command(f"https://127.0.0.1:{free_port()}", "--timeout", "3"), event(1), env
    )
    assert (run.rc, run.stdout) == (0, b"{}")
    assert "unreachable" in run.stderr
    [name] = spooled(spool)
    assert not name.endswith(".sent.json")


async def test_help_and_unknown_flags_go_through_argparse(env: dict[str, str]) -> None:
    run = await run_command([*installer.fast_shim_argv(), "--help"], b"", env)
    assert run.rc == 0
    assert run.stdout.startswith(b"usage: claude-bridge-hook")
    for flag in ("--url", "--token-env", "--timeout", "--spool-dir", "wait"):
        assert flag.encode() in run.stdout

    run = await run_command([*installer.fast_shim_argv(), "--timeout", "soon"], event(1), env)
    assert (run.rc, run.stdout) == (0, b"{}")
    assert "usage error: argument --timeout: invalid float value: 'soon'" in run.stderr


async def test_installed_command_ignores_the_working_directory_and_environment(
    bridge: FakeBridge, tmp_path: Path, env: dict[str, str]
) -> None:
    """-I: a module in the project Claude Code runs in can't shadow the shim's, and PYTHON*
    variables (PYTHONPATH, PYTHONSTARTUP…) don't reach it."""
    await bridge.start()
    project = tmp_path / "project"
    project.mkdir()
    (project / "_socket.py").write_text("raise SystemExit(3)\n")
    startup = project / "startup.py"
    startup.write_text("raise SystemExit(4)\n")
    settings = tmp_path / "settings.json"
    installer.install(
        settings, url=bridge.url, durable=True, hook_command=installer.default_hook_command(False)
    )
    [group] = json.loads(settings.read_text())["hooks"]["PostToolUse"]
    command = group["hooks"][0]["command"]
    env = {**env, "PYTHONPATH": str(project), "PYTHONSTARTUP": str(startup), "PYTHONINSPECT": "1"}

    run = await run_command(["sh", "-c", command], event(1), env, cwd=project)

    assert (run.rc, run.stdout) == (0, b"{}")
    assert bridge.bodies == [event(1)]
