"""The tmux driver: every tmux call the runner makes, as an argv (never a shell string).

A driver talks to one tmux server: the user's default one, or a named (``-L``) or path (``-S``)
socket. The runner's sessions are found by the tmux user options it sets on them
(``@claude-bridge-session`` and friends), never by parsing names alone. Nothing that came from
Matrix is put on a tmux command line: the text of a ``type`` job goes through ``load-buffer``'s
standard input, and the prompt of a ``new`` job through the launcher's spec file
(``runner/launch.py``), so tmux's own command parsing (an argument ending in ``;`` ends a
command) never sees it.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import shutil
from dataclasses import dataclass

from claude_bridge.control.framing import terminal_text

SESSION_OPTION = "@claude-bridge-session"
PROJECT_OPTION = "@claude-bridge-project"
JOB_OPTION = "@claude-bridge-job"
MIN_VERSION = (3, 0)
"""``new-session -- cmd args…`` runs the command without a shell from tmux 3.0 on."""

_FIELDS = (
    "#{session_name}",
    "#{pane_id}",
    "#{pane_dead}",
    "#{pane_dead_status}",
    "#{pane_pid}",
    "#{" + SESSION_OPTION + "}",
    "#{" + PROJECT_OPTION + "}",
    "#{" + JOB_OPTION + "}",
)
_SAFE_VALUE = re.compile(r"[A-Za-z0-9_.:@=+/-]{1,200}")
_DEAD_NOTICE = re.compile(r"Pane is dead( \(.*\))?\s*$")
_NO_SERVER = ("no server running", "error connecting to", "No such file or directory")


class TmuxError(Exception):
    """A tmux command failed; the message says which and what tmux said."""


class TmuxMissing(TmuxError):
    """tmux is not installed, or too old."""


@dataclass(frozen=True)
class Pane:
    session: str
    pane_id: str
    dead: bool
    status: int | None
    pid: int | None
    session_id: str
    project: str
    job_id: str


class Tmux:
    def __init__(
        self,
        binary: str = "tmux",
        *,
        socket_name: str | None = None,
        socket_path: str | None = None,
    ) -> None:
        self.binary = binary
        self.socket_name = socket_name
        self.socket_path = socket_path

    @property
    def base(self) -> list[str]:
        argv = [self.binary]
        if self.socket_path:
            argv += ["-S", self.socket_path]
        elif self.socket_name:
            argv += ["-L", self.socket_name]
        return argv

    def attach_hint(self, name: str) -> str:
        """The command a person at the host types to watch or take over a session."""
        return shlex.join(["tmux", *self.base[1:], "attach", "-t", name])

    async def check(self) -> tuple[int, int]:
        """tmux's version; :class:`TmuxMissing` with what to do when it is absent or too old."""
        if shutil.which(self.binary) is None:
            raise TmuxMissing(
                f"tmux not found ({self.binary!r} is not on PATH): the runner starts every "
                "session in tmux; install it (e.g. `apt install tmux`) or pass --tmux PATH"
            )
        out = await self._exec([self.binary, "-V"])
        m = re.search(r"(\d+)\.(\d+)", out)
        if not m:
            raise TmuxMissing(f"can't read tmux's version from {out.strip()!r}")
        version = (int(m[1]), int(m[2]))
        if version < MIN_VERSION:
            raise TmuxMissing(f"tmux {m[0]} is too old: the runner needs tmux 3.0 or newer")
        return version

    async def run(self, *args: str, stdin: bytes | None = None) -> str:
        for attempt in range(3):
            try:
                return await self._exec([*self.base, *args], stdin)
            except TmuxError as e:
                # the server was exiting (its last session just went): the next call starts
                # a new one
                if "server exited unexpectedly" not in str(e) or attempt == 2:
                    raise
        raise AssertionError("not reached")

    async def _exec(self, argv: list[str], stdin: bytes | None = None) -> str:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError as e:
            raise TmuxMissing(f"tmux not found: {e}") from e
        out, err = await proc.communicate(stdin)
        if proc.returncode != 0:
            raise TmuxError(
                f"`{' '.join(argv[1:3])}…` failed: {err.decode(errors='replace').strip()}"
            )
        return out.decode(errors="replace")

    async def panes(self) -> list[Pane]:
        """Every pane of the server with the runner's options; none when no server runs."""
        try:
            out = await self.run("list-panes", "-a", "-F", "\t".join(_FIELDS))
        except TmuxError as e:
            if any(marker in str(e) for marker in (*_NO_SERVER, "no current target")):
                return []  # no server, or one exiting with its last session gone
            raise
        panes = []
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) != len(_FIELDS):
                continue
            name, pane_id, dead, status, pid, session_id, project, job = parts
            panes.append(
                Pane(
                    session=name,
                    pane_id=pane_id,
                    dead=dead == "1",
                    status=int(status) if status.lstrip("-").isdigit() else None,
                    pid=int(pid) if pid.isdigit() else None,
                    session_id=session_id,
                    project=project,
                    job_id=job,
                )
            )
        return panes

    async def has_session(self, name: str) -> bool:
        try:
            await self.run("has-session", "-t", f"={name}")
        except TmuxError:
            return False
        return True

    async def new_session(
        self,
        name: str,
        cwd: str,
        argv: list[str],
        options: dict[str, str],
        *,
        width: int = 160,
        height: int = 48,
    ) -> None:
        """Start ``argv`` (run directly, no shell) in a detached session, its pane kept when
        the program exits (``remain-on-exit``: its exit status and last lines stay readable),
        and the options set in the same tmux call, so no one sees the session without them."""
        for value in (name, *options, *options.values()):
            _check_safe(value)
        cmd = ["new-session", "-d", "-s", name, "-c", cwd, "-x", str(width), "-y", str(height)]
        cmd += ["--", *argv]
        _check_argv(argv)
        sequence = [*cmd, ";", "set-option", "-w", "-t", f"={name}:", "remain-on-exit", "on"]
        for key, value in options.items():
            sequence += [";", "set-option", "-t", f"={name}:", key, value]
        await self.run(*sequence)

    async def respawn(
        self, name: str, pane_id: str, cwd: str, argv: list[str], options: dict[str, str]
    ) -> None:
        """Run ``argv`` again in the dead pane of session ``name`` (a resumed session keeps its
        tmux session, and whoever is attached to it sees it come back)."""
        _check_argv(argv)
        for value in (*options, *options.values()):
            _check_safe(value)
        sequence = ["respawn-pane", "-t", pane_id, "-c", cwd, "--", *argv]
        for key, value in options.items():
            sequence += [";", "set-option", "-t", f"={name}:", key, value]
        await self.run(*sequence)

    async def set_options(self, name: str, options: dict[str, str]) -> None:
        sequence: list[str] = []
        for key, value in options.items():
            _check_safe(key)
            _check_safe(value)
            sequence += [*([";"] if sequence else []), "set-option", "-t", f"={name}:", key, value]
        sequence += [";", "set-option", "-w", "-t", f"={name}:", "remain-on-exit", "on"]
        await self.run(*sequence)

    async def paste(self, pane_id: str, text: str, buffer: str) -> None:
        """``text`` into the pane as one bracketed paste (the program sees a paste, not keys:
        a line break in it does not submit). The buffer is deleted after the paste. Control
        characters are replaced (``terminal_text``): tmux pastes bytes as they are, and an
        ``ESC [201~`` in them would end the paste and type the rest as keys."""
        _check_safe(buffer)
        await self.run("load-buffer", "-b", buffer, "-", stdin=terminal_text(text).encode())
        await self.run("paste-buffer", "-p", "-d", "-r", "-b", buffer, "-t", pane_id)

    async def send_keys(self, pane_id: str, *keys: str) -> None:
        for key in keys:
            _check_safe(key)
        await self.run("send-keys", "-t", pane_id, *keys)

    async def capture(self, pane_id: str, lines: int = 20) -> str:
        """The pane's last ``lines`` lines up to its last non-blank one (history included;
        tmux's own "Pane is dead" line left out)."""
        out = await self.run("capture-pane", "-p", "-J", "-t", pane_id, "-S", f"-{lines + 50}")
        kept = [line for line in out.splitlines() if not _DEAD_NOTICE.match(line)]
        while kept and not kept[-1].strip():
            kept.pop()
        return "\n".join(line.rstrip() for line in kept[-lines:])

    async def kill_session(self, name: str) -> None:
        try:
            await self.run("kill-session", "-t", f"={name}")
        except TmuxError as e:
            if "can't find session" not in str(e) and not any(m in str(e) for m in _NO_SERVER):
                raise

    async def kill_server(self) -> None:
        try:
            await self.run("kill-server")
        except TmuxError:
            pass


def _check_argv(argv: list[str]) -> None:
    for arg in argv:
        if arg.endswith(";"):
            raise TmuxError(f"argument {arg!r} ends with ';', which tmux reads as a separator")


def _check_safe(value: str) -> None:
    if not _SAFE_VALUE.fullmatch(value):
        raise TmuxError(f"refusing {value!r} on a tmux command line")
