"""Running the real Claude Code CLI in tests: print mode, and the terminal UI on a pseudo-terminal.

The binary is the npm package ``@anthropic-ai/claude-code`` that ``scripts/bootstrap`` installs
into ``.venv/claude-code`` (``CLAUDE_CODE_BIN`` points elsewhere). Each test gets a HOME of its
own with the bridge's hooks installed by ``claude-bridge install-hooks`` and Claude Code's
first-run state filled in, so that nothing but loopback is contacted: onboarding would look up
api.anthropic.com, and ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC`` turns off telemetry and
update checks. The model is :class:`tests.e2e.fake_anthropic.FakeAnthropic`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import re
import signal
import struct
import sys
import termios
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.fake_anthropic import FakeAnthropic

REPO = Path(__file__).resolve().parents[2]
CLAUDE = Path(
    os.environ.get(
        "CLAUDE_CODE_BIN", REPO / ".venv" / "claude-code" / "node_modules" / ".bin" / "claude"
    )
)
API_KEY = "sk-test-fake-key"  # ≤ 20 characters: Claude Code approves keys by their last 20
_ANSI = re.compile(
    r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[][()#;?]*(?:[0-9]{1,4}(?:;[0-9]{0,4})*)?[0-9A-ORZcf-nqry=><]"
)


@dataclass
class ClaudeCode:
    """One machine's Claude Code: a HOME with the bridge's hooks, a project, the fake model."""

    home: Path
    project: Path
    model: FakeAnthropic
    hook_token: str

    @classmethod
    def prepare(cls, base: Path, model: FakeAnthropic, hook_token: str) -> ClaudeCode:
        """A HOME whose Claude Code has done its first run (onboarding, the API key approved,
        the project trusted), without the bridge's hooks."""
        home, project = base / "home", base / "demo-app"
        home.mkdir()
        project.mkdir()
        claude = cls(home, project, model, hook_token)
        (home / ".claude.json").write_text(
            json.dumps(
                {
                    "hasCompletedOnboarding": True,
                    "customApiKeyResponses": {"approved": [API_KEY], "rejected": []},
                    "projects": {str(project): {"hasTrustDialogAccepted": True}},
                }
            )
        )
        return claude

    @classmethod
    async def install(
        cls, base: Path, model: FakeAnthropic, bridge_url: str, hook_token: str, *extra: str
    ) -> ClaudeCode:
        claude = cls.prepare(base, model, hook_token)
        env = claude.env()
        env["PATH"] = f"{CLAUDE.parent}:{env['PATH']}"  # install-hooks asks `claude --version`
        argv = ["-m", "claude_bridge", "install-hooks", "--user", "--url", bridge_url, *extra]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *argv,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"install-hooks failed: {out.decode()}")
        return claude

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "TERM": "xterm-256color",
            "ANTHROPIC_BASE_URL": self.model.url,
            "ANTHROPIC_API_KEY": API_KEY,
            "CLAUDE_BRIDGE_TOKEN": self.hook_token,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
        }

    async def print_mode(self, *args: str, timeout: float = 120) -> tuple[int, str, str]:
        """``claude -p …`` to its end: (exit code, stdout, stderr)."""
        proc = await asyncio.create_subprocess_exec(
            str(CLAUDE),
            "-p",
            *args,
            cwd=self.project,
            env=self.env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        finally:
            _kill_group(proc)
        return proc.returncode or 0, out.decode(), err.decode()

    @contextlib.asynccontextmanager
    async def terminal(self, *args: str) -> AsyncIterator[Terminal]:
        """The interactive UI on a pseudo-terminal; killed (with its hooks) at the end."""
        term = await Terminal.start([str(CLAUDE), *args], self.project, self.env())
        try:
            yield term
        finally:
            await term.close()


class Terminal:
    """A program on a pseudo-terminal: keystrokes in, everything it draws kept as text."""

    def __init__(self, proc: asyncio.subprocess.Process, master: int) -> None:
        self.proc = proc
        self.master = master
        self.raw = b""
        self._changed = asyncio.Event()

    @classmethod
    async def start(
        cls, argv: list[str], cwd: Path, env: dict[str, str], rows: int = 48, cols: int = 160
    ) -> Terminal:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
        )
        os.close(slave)
        term = cls(proc, master)
        asyncio.get_running_loop().add_reader(master, term._read)
        return term

    def _read(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except OSError:
            data = b""
        if not data:  # the program is gone
            asyncio.get_running_loop().remove_reader(self.master)
        self.raw += data
        self._changed.set()

    @property
    def text(self) -> str:
        return _ANSI.sub("", self.raw.decode("utf-8", "replace"))

    async def wait_for(self, needle: str, timeout: float = 30) -> None:
        """Wait until ``needle`` is drawn (white space aside: the UI moves the cursor instead)."""
        wanted = _squeezed(needle)
        try:
            async with asyncio.timeout(timeout):
                while wanted not in _squeezed(self.text):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"{needle!r} not on screen; it shows:\n{self.text[-3000:]}"
            ) from None

    async def submit(self, line: str) -> None:
        """Type ``line`` and, once it shows, press Enter (typed at once it reads as a paste)."""
        os.write(self.master, line.encode())
        await self.wait_for(line)
        os.write(self.master, b"\r")

    def press(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    async def close(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.master)
        _kill_group(self.proc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 10)
        os.close(self.master)


def _squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """The CLI, its process group and every process it started: it starts hooks in groups of
    their own, and the background waiter would otherwise poll a stopped bridge for an hour."""
    doomed = [proc.pid, *_descendants(proc.pid)]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
