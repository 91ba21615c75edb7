"""The runner's sessions as tmux holds them: found at start, watched for exits.

A session is the runner's when its tmux session name starts with ``claude-`` and it carries the
``@claude-bridge-session`` option. The table is rebuilt from tmux on every refresh, so a runner
that restarts reports the sessions it left running and starts none of them again. A pane that
died (its program exited; ``remain-on-exit`` keeps it) is reported once with its exit status and
last lines, and killed only after the bridge has acknowledged that report; a session that
vanished (killed by hand, tmux server gone) is reported with no status.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from claude_bridge.runner.tmux import Pane, Tmux, TmuxError

PREFIX = "claude-"
TAIL_LINES = 20


@dataclass
class Live:
    session_id: str
    project: str
    tmux: str
    job_id: str | None
    pane_id: str
    dead: bool = False
    status: int | None = None
    pid: int | None = None

    @property
    def key(self) -> str:
        """This run of the session: pane ids restart with a new tmux server, pids do not repeat
        soon."""
        return f"{self.pane_id}/{self.pid}"

    def wire(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "project": self.project,
            "tmux": self.tmux,
            "job_id": self.job_id,
            "state": "exited" if self.dead else "running",
        }


@dataclass
class Exit:
    session_id: str
    status: int | None
    tail: str
    tmux: str | None
    key: str | None = None
    """The run (:attr:`Live.key`) that exited."""

    def wire(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "status": self.status, "tail": self.tail}


def tmux_name(project: str, session_id: str) -> str:
    return f"{PREFIX}{project}-{session_id[:8]}"


class Sessions:
    def __init__(self, tmux: Tmux, status_dir: Path | None = None) -> None:
        self.tmux = tmux
        self.status_dir = status_dir
        """Where the launcher leaves each session's exit status (``<session id>.json``)."""
        if status_dir is not None:
            status_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.live: dict[str, Live] = {}
        self.exits: dict[str, Exit] = {}
        """Exits not yet acknowledged by the bridge, by session id."""

    async def refresh(self) -> bool:
        """Re-read tmux; True when an exit not seen before was found."""
        panes = [p for p in await self.tmux.panes() if _ours(p)]
        found: dict[str, Live] = {}
        for pane in panes:
            if pane.session_id in found:
                continue  # a second pane someone opened in the session: the first one counts
            found[pane.session_id] = Live(
                session_id=pane.session_id,
                project=pane.project,
                tmux=pane.session,
                job_id=pane.job_id or None,
                pane_id=pane.pane_id,
                dead=pane.dead,
                status=pane.status,
                pid=pane.pid,
            )
        new_exit = False
        for session_id, live in found.items():
            if live.dead and live.status is None:
                live.status = self._status_from_launcher(session_id)
            if live.dead and session_id not in self.exits:
                try:
                    tail = await self.tmux.capture(live.pane_id, TAIL_LINES)
                except TmuxError:
                    tail = ""
                self.exits[session_id] = Exit(session_id, live.status, tail, live.tmux, live.key)
                new_exit = True
        for session_id in self.live:
            if session_id not in found and session_id not in self.exits:
                self.exits[session_id] = Exit(session_id, None, "", None)
                new_exit = True
        self.live = found
        return new_exit

    def status_file(self, session_id: str) -> Path | None:
        return None if self.status_dir is None else self.status_dir / f"{session_id}.json"

    def _status_from_launcher(self, session_id: str) -> int | None:
        path = self.status_file(session_id)
        try:
            status = json.loads(path.read_text())["status"] if path else None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return status if isinstance(status, int) else None

    def running(self) -> int:
        return sum(1 for live in self.live.values() if not live.dead)

    def report(self) -> list[dict[str, Any]]:
        return [live.wire() for live in self.live.values() if not live.dead]

    def pending_exits(self) -> list[Exit]:
        return list(self.exits.values())

    async def acknowledged(self, exits: list[Exit]) -> None:
        """The bridge has these exits: kill what is left of their sessions, forget them."""
        for gone in exits:
            live = self.live.get(gone.session_id)
            if live is not None and live.key == gone.key:
                # not a session resumed under the same name meanwhile
                await self.tmux.kill_session(live.tmux)
                del self.live[gone.session_id]
            if self.exits.get(gone.session_id) is gone:
                del self.exits[gone.session_id]
                path = self.status_file(gone.session_id)
                if path is not None and (live is None or live.key == gone.key):
                    path.unlink(missing_ok=True)

    def add_exit(self, gone: Exit) -> None:
        self.exits.setdefault(gone.session_id, gone)


def _ours(pane: Pane) -> bool:
    return pane.session.startswith(PREFIX) and bool(pane.session_id)
