"""``claude-bridge runner`` as the tests run it: the real command in a process of its own, the
real Claude Code CLI in tmux (a private tmux server per test, ``-S``), HOME prepared like
``claude_code.py`` does (first run done, the project trusted) but without installed hooks: the
runner passes them with ``--settings``. Only the model is scripted."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from claude_bridge.runner.tmux import Pane, Tmux
from tests.e2e.claude_code import CLAUDE, ClaudeCode, _descendants
from tests.e2e.conftest import HOOK_TOKEN
from tests.e2e.fake_anthropic import FakeAnthropic


class HostRunner:
    def __init__(self, base: Path, claude: ClaudeCode, url: str) -> None:
        self.base = base
        self.claude = claude
        self.url = url
        self.socket = Path(f"/tmp/cb-e2e-{uuid.uuid4().hex[:12]}")  # a private tmux server
        self.tmux = Tmux(socket_path=str(self.socket))
        self.proc: asyncio.subprocess.Process | None = None
        self.log = base / "runner.log"
        self.starts = 0

    @property
    def state(self) -> Path:
        return self.base / "state"

    async def start(self) -> None:
        argv = ["-m", "claude_bridge", "runner", "--host", "laptop"]
        argv += ["--project", f"api={self.claude.project}", "--claude", str(CLAUDE)]
        argv += ["--tmux-socket", str(self.socket), "--state-dir", str(self.state)]
        argv += ["--wait", "2", "--end-timeout", "10", "--log-level", "DEBUG"]
        env = {**self.claude.env(), "CLAUDE_BRIDGE_URL": self.url}
        self.starts += 1
        log = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(log, f"--- start {self.starts}\n".encode())
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, *argv, env=env, stdout=log, stderr=log, start_new_session=True
            )
        finally:
            os.close(log)

    async def kill(self) -> None:
        """SIGKILL the runner alone: tmux and the sessions in it live on."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        self.proc = None

    async def panes(self) -> list[Pane]:
        return [p for p in await self.tmux.panes() if p.session_id]

    async def screen(self, session_id: str) -> str:
        for pane in await self.panes():
            if pane.session_id == session_id:
                return await self.tmux.capture(pane.pane_id, 200)
        return ""

    async def close(self) -> None:
        await self.kill()
        pids = [p.pid for p in await self.tmux.panes() if p.pid]
        doomed = [pid for root in pids for pid in (root, *_descendants(root))]
        await self.tmux.kill_server()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)
        for pid in doomed:  # Claude Code and the hooks it started, in groups of their own
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.asynccontextmanager
async def host_runner(base: Path, model: FakeAnthropic, url: str) -> AsyncIterator[HostRunner]:
    claude = ClaudeCode.prepare(base, model, HOOK_TOKEN)
    runner = HostRunner(base, claude, url)
    await runner.start()
    try:
        yield runner
    finally:
        await runner.close()
