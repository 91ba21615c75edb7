"""Real tmux on a private server per test (``-S`` with a socket of its own, killed and removed
afterwards): no test touches the user's tmux server."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from claude_bridge.runner.config import RunnerConfig
from claude_bridge.runner.jobs import Executor
from claude_bridge.runner.journal import Journal
from claude_bridge.runner.service import session_env
from claude_bridge.runner.sessions import Sessions
from claude_bridge.runner.tmux import Tmux

T = TypeVar("T")
FAKE_CLAUDE = Path(__file__).with_name("fake_claude.py")


@pytest.fixture
async def tmux() -> AsyncIterator[Tmux]:
    socket = Path(f"/tmp/cb-test-{uuid.uuid4().hex[:12]}")  # short: a socket path has a limit
    server = Tmux(socket_path=str(socket))
    yield server
    await server.kill_server()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket)


@pytest.fixture
def fake_claude(tmp_path: Path) -> Path:
    """An executable ``claude`` running fake_claude.py with this Python."""
    exe = tmp_path / "bin" / "claude"
    exe.parent.mkdir()
    exe.write_text(
        f"#!{sys.executable}\nimport runpy\nrunpy.run_path({str(FAKE_CLAUDE)!r}, run_name='__main__')\n"
    )
    exe.chmod(0o755)
    return exe


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A HOME whose Claude Code has done its first run (projects are trusted per test)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".claude.json").write_text(json.dumps({"hasCompletedOnboarding": True}))
    return home


def trust(home: Path, *dirs: Path) -> None:
    path = home / ".claude.json"
    data = json.loads(path.read_text())
    for d in dirs:
        data.setdefault("projects", {})[str(d)] = {"hasTrustDialogAccepted": True}
    path.write_text(json.dumps(data))


async def eventually(probe: Callable[[], Awaitable[T]], timeout: float = 10) -> T:
    """Ask ``probe`` until its answer is true (tmux has no way to wait on a pane); the answer."""
    async with asyncio.timeout(timeout):
        for _ in itertools.count():
            answer = await probe()
            if answer:
                return answer
            await asyncio.sleep(0.05)
    raise AssertionError("not reached")


async def screen(tmux: Tmux, pane: str, needle: str, timeout: float = 10) -> str:
    """Wait until the pane shows ``needle``; its text."""

    async def shown() -> str | None:
        text = await tmux.capture(pane, 200)
        return text if needle in text else None

    return await eventually(shown, timeout)


@pytest.fixture
def config(tmp_path: Path, fake_claude: Path, home: Path) -> RunnerConfig:
    api = tmp_path / "api"
    api.mkdir()
    trust(home, api)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return RunnerConfig(
        url="http://127.0.0.1:9",
        token="secret-token-1234567890",
        host="laptop",
        projects={"api": api},
        claude=str(fake_claude),
        args=["--model", "opus"],
        state_dir=state,
        end_timeout=30,
    )


@pytest.fixture
def make(config: RunnerConfig, tmux: Tmux, home: Path) -> Callable[[], Executor]:
    """A runner's executor over the same state and tmux server: a second call is a restart."""

    def start() -> Executor:
        journal = Journal(config.state_dir / "journal.jsonl")
        journal.open()
        env = session_env(
            config,
            {
                "PATH": "/usr/bin:/bin",
                "HOME": str(home),
                "RUNNER_TEST_MARK": "inherited",
                "TMUX": "/elsewhere",
            },
        )
        settings = config.state_dir / "hooks-settings.json"
        settings.write_text("{}")
        return Executor(
            config, tmux, Sessions(tmux, config.state_dir / "exits"), journal, env, settings
        )

    return start
