"""Carrying out the bridge's jobs on this host, each at most once in effect.

- ``new`` / ``resume``: start Claude Code in a detached tmux session named
  ``claude-<project>-<first 8 of the session id>``; if that session already exists, nothing is
  started (the job was redelivered, or the runner restarted in the middle of it).
- ``type``: the text as one bracketed paste, then Enter. ``interrupt``: Escape. ``end``:
  ``/exit`` and Enter, and the session killed after ``end_timeout`` if it is still there.
  These three are journalled before they act (``journal.py``), so none runs twice.

Every refusal is a failed result whose error the bridge shows the requester.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from claude_bridge.control.framing import prompt_command, terminal_text
from claude_bridge.log import get_logger
from claude_bridge.runner import launch
from claude_bridge.runner.config import RunnerConfig, check_project_name
from claude_bridge.runner.journal import Journal, Result
from claude_bridge.runner.sessions import Exit, Live, Sessions, tmux_name
from claude_bridge.runner.tmux import Tmux, TmuxError
from claude_bridge.runner.trust import first_run_problem

log = get_logger(__name__)

KINDS = ("new", "resume", "interrupt", "end", "type")
JOB_ID = re.compile(r"[A-Za-z0-9_.:=+-]{1,128}")
PASTE_SHOWN_TIMEOUT = 3.0
_COMMAND = (
    "the text starts with {char!r}, which Claude Code's prompt runs as a command (`/`) or a "
    "shell command (`!`) instead of sending it to Claude: not typed"
)


class Refused(Exception):
    """A job the runner will not do; the message goes back to the requester."""


class Executor:
    def __init__(
        self,
        config: RunnerConfig,
        tmux: Tmux,
        sessions: Sessions,
        journal: Journal,
        env: dict[str, str],
        settings_file: Path | None,
    ) -> None:
        self.config = config
        self.tmux = tmux
        self.sessions = sessions
        self.journal = journal
        self.env = env
        self.settings_file = settings_file
        self.launch_dir = config.state_dir / "launch"
        self.launch_dir.mkdir(mode=0o700, exist_ok=True)
        self._enders: set[asyncio.Task[None]] = set()
        self.before_type: list[Callable[[dict[str, Any], Live], Awaitable[str | None]]] = []
        """Steps run before a ``type`` job pastes its text (fetching an attachment, say); one
        may return a replacement text. Raising :class:`Refused` refuses the job."""

    async def execute(self, job: dict[str, Any]) -> Result:
        job_id = job.get("id")
        if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
            return Result(str(job_id)[:128], False, "malformed job id")
        known = self.journal.known(job_id)
        if known is not None:
            return known  # redelivered: answered as the first time, never done again
        kind = job.get("kind")
        try:
            self._check(job)
            if kind in ("new", "resume"):
                result = await self._start(job, resume=kind == "resume")
                self.journal.finish(result)
                return result
            live = self._live(job)
            self.journal.begin(job_id)
            if kind == "type":
                await self.type_text(job, live)
            elif kind == "interrupt":
                await self.tmux.send_keys(live.pane_id, "Escape")
            else:
                await self._end(live)
            result = Result(job_id, True)
        except Refused as e:
            result = Result(job_id, False, str(e))
        except (TmuxError, OSError) as e:
            log.warning("runner.job_failed", job=job_id, kind=kind, error=str(e))
            result = Result(job_id, False, f"tmux failed on the host: {e}")
        if kind not in ("new", "resume") or not result.ok:
            self.journal.finish(result)
        log.info("runner.job", job=job_id, kind=kind, ok=result.ok, error=result.error)
        return result

    def _check(self, job: dict[str, Any]) -> None:
        kind = job.get("kind")
        if kind not in KINDS:
            raise Refused(f"unknown job kind {kind!r}")
        who = job.get("requested_by")
        accept = self.config.accept_from
        if accept is not None and who not in accept:
            raise Refused(f"this host's runner does not accept jobs from {who}")
        session_id = job.get("session_id")
        try:
            if not isinstance(session_id, str) or str(uuid.UUID(session_id)) != session_id:
                raise ValueError
        except ValueError:
            raise Refused(f"not a session id: {session_id!r}") from None

    def _project(self, job: dict[str, Any]) -> tuple[str, Path]:
        name = job.get("project")
        if not isinstance(name, str):
            raise Refused("no project given")
        reason = check_project_name(name)
        if reason:
            raise Refused(reason)
        if name not in self.config.projects:
            known = ", ".join(sorted(self.config.projects))
            raise Refused(f"project {name!r} is not configured on {self.config.host} ({known})")
        return name, self.config.projects[name]

    def _live(self, job: dict[str, Any]) -> Live:
        live = self.sessions.live.get(job["session_id"])
        if live is None or live.dead:
            raise Refused(f"session {job['session_id']} is not running on {self.config.host}")
        return live

    async def _start(self, job: dict[str, Any], *, resume: bool) -> Result:
        project, directory = self._project(job)
        session_id = job["session_id"]
        name = tmux_name(project, session_id)
        live = self.sessions.live.get(session_id)
        if live is not None and not live.dead:
            return Result(job["id"], True)  # already running (a redelivery, or a restart)
        dead: Live | None = None
        if await self.tmux.has_session(name):
            await self.sessions.refresh()
            live = self.sessions.live.get(session_id)
            if live is None:  # started, but the runner died before its options were set
                await self.tmux.set_options(name, self._options(session_id, project, job["id"]))
                return Result(job["id"], True)
            if not live.dead:
                return Result(job["id"], True)
            dead = live  # its earlier run's pane (its exit is recorded): run it there again
        if self.sessions.running() >= self.config.max_sessions:
            raise Refused(
                f"{self.config.host} already runs {self.config.max_sessions} sessions "
                "(max_sessions)"
            )
        problem = first_run_problem(directory, self.env, trust=self.config.trust_projects)
        if problem:
            raise Refused(problem)
        argv = [self.config.claude]
        argv += ["--resume", session_id] if resume else ["--session-id", session_id]
        argv += self.config.args
        if self.settings_file is not None:
            argv += ["--settings", str(self.settings_file)]
        prompt = job.get("prompt")
        if not resume and isinstance(prompt, str) and prompt.strip():
            if command := prompt_command(prompt):
                raise Refused(_COMMAND.format(char=command))
            argv += ["--", prompt]
        status_file = self.sessions.status_file(session_id)
        if status_file is not None:
            status_file.unlink(missing_ok=True)  # the previous run's, reported already
        spec = self._write_spec(argv, directory, status_file)
        launcher = [sys.executable, "-I", "-S", launch.__file__, str(spec)]
        options = self._options(session_id, project, job["id"])
        try:
            if dead is not None:
                await self.tmux.respawn(name, dead.pane_id, str(directory), launcher, options)
            else:
                await self.tmux.new_session(name, str(directory), launcher, options)
        except BaseException:
            spec.unlink(missing_ok=True)
            raise
        await self.sessions.refresh()
        return Result(job["id"], True)

    @staticmethod
    def _options(session_id: str, project: str, job_id: str) -> dict[str, str]:
        return {
            "@claude-bridge-session": session_id,
            "@claude-bridge-project": project,
            "@claude-bridge-job": job_id,
        }

    def _write_spec(self, argv: list[str], directory: Path, status_file: Path | None) -> Path:
        path = self.launch_dir / f"{uuid.uuid4().hex}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            spec = {"argv": argv, "cwd": str(directory), "env": self.env}
            json.dump({**spec, "status_file": str(status_file) if status_file else None}, f)
        return path

    async def type_text(self, job: dict[str, Any], live: Live) -> None:
        """The operator's text as a user turn: one bracketed paste, then Enter once the pane
        shows it (Enter sent along with the paste could be read as part of it)."""
        text = job.get("text")
        if not isinstance(text, str) or not text.strip():
            raise Refused("nothing to type")
        for step in self.before_type:
            replaced = await step(job, live)
            if replaced is not None:
                text = replaced
        # The pane is a terminal: an escape sequence in the text (``ESC [201~`` ends the
        # bracketed paste) would type the rest as keys, and a prompt that starts with ``/`` or
        # ``!`` runs as Claude Code's command or as a shell command with no permission asked.
        # The bridge frames such a message (``framing.typed_prompt``); this host checks again.
        text = terminal_text(text)
        if command := prompt_command(text):
            raise Refused(_COMMAND.format(char=command))
        before = await self.tmux.capture(live.pane_id, 200)
        await self.tmux.paste(live.pane_id, text, f"cb-{job['id']}"[:100])
        for _ in range(int(PASTE_SHOWN_TIMEOUT / 0.05)):
            if await self.tmux.capture(live.pane_id, 200) != before:
                break
            await asyncio.sleep(0.05)
        await self.tmux.send_keys(live.pane_id, "Enter")

    async def _end(self, live: Live) -> None:
        await self.tmux.send_keys(live.pane_id, "-l", "/exit")
        await self.tmux.send_keys(live.pane_id, "Enter")
        task = asyncio.create_task(self._kill_later(live))
        self._enders.add(task)
        task.add_done_callback(self._enders.discard)

    async def _kill_later(self, live: Live) -> None:
        """``/exit`` normally ends Claude Code well within the timeout (the pane dies and the
        exit is reported with its status); if not, the session is killed and reported."""
        await asyncio.sleep(self.config.end_timeout)
        current = self.sessions.live.get(live.session_id)
        if current is None or current.key != live.key or current.dead:
            return
        try:
            tail = await self.tmux.capture(live.pane_id)
            await self.tmux.kill_session(live.tmux)
        except TmuxError as e:
            log.warning("runner.end_kill_failed", session=live.session_id, error=str(e))
            return
        self.sessions.add_exit(Exit(live.session_id, None, tail, None, live.key))

    async def close(self) -> None:
        for task in list(self._enders):
            task.cancel()
