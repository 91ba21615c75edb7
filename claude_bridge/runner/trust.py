"""Claude Code's first-run state, as the runner sees it before starting a session.

Claude Code's terminal UI asks on first start (no ``hasCompletedOnboarding`` in
``~/.claude.json``) and in every folder no one has trusted yet ("Do you trust the files in this
folder?"). In a detached tmux pane started from Matrix no one would see that dialog: the session
would sit there and never send a hook. So, before ``new`` or ``resume``, the runner reads that
file and refuses with a reason the requester sees, unless the runner was told to trust its
projects (``trust_projects: true``): configuring a project there is then the host owner's trust
decision, and the runner records it the way Claude Code's dialog would. Nothing else in the file
is touched; it is replaced atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def claude_json_path(env: dict[str, str]) -> Path:
    """``$CLAUDE_CONFIG_DIR/.claude.json`` when that is set, else ``~/.claude.json``."""
    base = env.get("CLAUDE_CONFIG_DIR")
    if base:
        return Path(base).expanduser() / ".claude.json"
    return Path(env.get("HOME") or Path.home()) / ".claude.json"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _trusted(data: dict[str, Any], directory: Path) -> bool:
    projects = data.get("projects")
    if not isinstance(projects, dict):
        return False
    for candidate in (directory, *directory.parents):
        entry = projects.get(str(candidate))
        if isinstance(entry, dict) and entry.get("hasTrustDialogAccepted") is True:
            return True
    return False


def first_run_problem(directory: Path, env: dict[str, str], *, trust: bool) -> str | None:
    """Why Claude Code would stop at a first-run dialog in ``directory`` (None: it won't).
    With ``trust``, an untrusted project directory is marked trusted instead."""
    path = claude_json_path(env)
    data = _read(path)
    if data.get("hasCompletedOnboarding") is not True:
        return (
            f"Claude Code has not been set up for this user on the host ({path} says onboarding "
            "is not done): run `claude` once there in a terminal"
        )
    if _trusted(data, directory):
        return None
    if not trust:
        return (
            f"Claude Code would ask whether to trust {directory}: run `claude` there once and "
            "accept, or start the runner with trust_projects: true"
        )
    projects = data.setdefault("projects", {})
    entry = projects.setdefault(str(directory), {})
    if not isinstance(entry, dict):
        return f"{path} has an unexpected entry for {directory}; not touching it"
    entry["hasTrustDialogAccepted"] = True
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".claude.json.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return None
