"""The runner's poll body, checked (issue 15; ``openapi.yaml``: RunnerPoll).

Everything a runner sends is read here, once, into plain values; anything else is refused with a
message that says what is wrong (the handler answers 400 for a body that is not a JSON object and
422 for one that breaks these rules). Names that reach a file system or a tmux command on the
host are narrowed to what cannot be a path: a project is a bare name, never ``..`` or ``/…``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from claude_bridge.store.runners import RunnerSession

MAX_WAIT = 55
INSTANCE_HEADER = "X-Claude-Bridge-Runner-Instance"
"""A random id each runner process makes at start and sends with every poll (``runners.py``)."""
LEGACY_INSTANCE = ""
"""The instance of every poll without the header: one instance of its own."""
DEFAULT_WAIT = 25
MAX_ITEMS = 500
MAX_TAIL = 4000
MAX_ERROR = 2000
MAX_PATH = 4096

HOST = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62})$")
PROJECT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
SESSION_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
USER_ID = re.compile(r"^@[^:\s]+:[^\s]+$")
JOB_ID = re.compile(r"^[A-Za-z0-9._:-]{1,80}$")
TMUX = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
STATES = frozenset({"running", "idle", "busy", "exited", "starting"})


class WireError(ValueError):
    """What is wrong with the body, for the runner's log."""


@dataclass(frozen=True)
class Result:
    job_id: str
    ok: bool
    error: str | None


@dataclass(frozen=True)
class Exit:
    session_id: str
    status: int | None
    tail: str


@dataclass(frozen=True)
class Poll:
    host: str
    projects: list[str]
    max_sessions: int | None
    accept_from: list[str] | None
    sessions: list[RunnerSession]
    results: list[Result]
    exits: list[Exit]
    wait: float
    release: bool = False
    """The runner is stopping cleanly: unbind its instance and answer at once."""
    project_dirs: dict[str, str] = field(default_factory=dict)
    """Each project's directory on the host (absolute), for its sessions' threads."""


def project_problem(name: str) -> str | None:
    """Why ``name`` cannot be a project name (None: it can): a bare name, never a path."""
    if name in ("", ".", "..") or ".." in name:
        return f"`{name}` is not a project name: `..` is not allowed"
    if name.startswith(("/", "~")) or "/" in name or "\\" in name:
        return f"`{name}` is not a project name: paths are not allowed, only a project's name"
    if not PROJECT.fullmatch(name):
        return f"`{name}` is not a project name (letters, digits, `_`, `.`, `-`; up to 64)"
    return None


def _list(data: dict[str, Any], key: str, *, optional: bool = False) -> list[Any] | None:
    value = data.get(key)
    if value is None:
        if optional:
            return None
        return []
    if not isinstance(value, list):
        raise WireError(f"{key} must be a list")
    if len(value) > MAX_ITEMS:
        raise WireError(f"{key} holds more than {MAX_ITEMS} items")
    return value


def _text(value: Any, key: str, limit: int, *, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str):
        raise WireError(f"{key} must be a string")
    if len(value) > limit:
        raise WireError(f"{key} is longer than {limit} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise WireError(f"{key} {value[:80]!r} must match {pattern.pattern}")
    if "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise WireError(f"{key} holds a character that cannot be stored")
    return value


def _object(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WireError(f"each item of {key} must be an object")
    return value


def _session(item: Any) -> RunnerSession:
    s = _object(item, "sessions")
    job = s.get("job_id")
    return RunnerSession(
        session_id=_text(s.get("session_id"), "sessions[].session_id", 36, pattern=SESSION_ID),
        project=_project(s.get("project"), "sessions[].project"),
        tmux=_text(s.get("tmux"), "sessions[].tmux", 100, pattern=TMUX),
        job_id=None if job is None else _text(job, "sessions[].job_id", 80, pattern=JOB_ID),
        state=_text(s.get("state", "running"), "sessions[].state", 20),
    )


def _project(value: Any, key: str) -> str:
    name = _text(value, key, 64)
    if problem := project_problem(name):
        raise WireError(f"{key}: {problem}")
    return name


def _project_dirs(data: dict[str, Any], projects: list[str]) -> dict[str, str]:
    """``project_dirs``: for projects it offers, each an absolute path of printable text."""
    raw = data.get("project_dirs")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise WireError("project_dirs must be an object NAME: DIR")
    if len(raw) > MAX_ITEMS:
        raise WireError(f"project_dirs holds more than {MAX_ITEMS} items")
    dirs = {}
    for name, directory in raw.items():
        if name not in projects:
            raise WireError(f"project_dirs names {str(name)[:80]!r}, which is not in projects")
        path = _text(directory, "project_dirs[]", MAX_PATH)
        if not path.startswith("/") or not path.isprintable():
            raise WireError(f"project_dirs[{name}] must be an absolute path of printable text")
        dirs[name] = path
    return dirs


def _result(item: Any) -> Result:
    r = _object(item, "results")
    ok = r.get("ok")
    if not isinstance(ok, bool):
        raise WireError("results[].ok must be true or false")
    error = r.get("error")
    return Result(
        job_id=_text(r.get("job_id"), "results[].job_id", 80, pattern=JOB_ID),
        ok=ok,
        error=None if error is None else _text(error, "results[].error", MAX_ERROR * 4)[:MAX_ERROR],
    )


def _exit(item: Any) -> Exit:
    e = _object(item, "exits")
    status = e.get("status")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
        raise WireError("exits[].status must be an integer or null")
    tail = e.get("tail") or ""
    return Exit(
        session_id=_text(e.get("session_id"), "exits[].session_id", 36, pattern=SESSION_ID),
        status=status,
        tail=_text(tail, "exits[].tail", MAX_TAIL * 16)[-MAX_TAIL:],
    )


def parse_poll(data: Any) -> Poll:
    """The poll body as values, or :class:`WireError` saying what is wrong."""
    if not isinstance(data, dict):
        raise WireError("the poll body must be a JSON object")
    host = _text(data.get("host"), "host", 63, pattern=HOST)
    projects = [_project(p, "projects[]") for p in _list(data, "projects") or []]
    max_sessions = data.get("max_sessions")
    if max_sessions is not None and (
        isinstance(max_sessions, bool) or not isinstance(max_sessions, int) or max_sessions < 0
    ):
        raise WireError("max_sessions must be a non-negative integer or null")
    accept = _list(data, "accept_from", optional=True)
    accept_from = (
        None
        if accept is None
        else [_text(u, "accept_from[]", 255, pattern=USER_ID) for u in accept]
    )
    wait = data.get("wait", DEFAULT_WAIT)
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not math.isfinite(wait):
        raise WireError("wait must be a number of seconds")
    if wait < 0:
        raise WireError("wait must not be negative")
    release = data.get("release", False)
    if not isinstance(release, bool):
        raise WireError("release must be true or false")
    return Poll(
        host=host,
        projects=projects,
        max_sessions=max_sessions,
        accept_from=accept_from,
        sessions=[_session(s) for s in _list(data, "sessions") or []],
        results=[_result(r) for r in _list(data, "results") or []],
        exits=[_exit(e) for e in _list(data, "exits") or []],
        wait=min(float(wait), MAX_WAIT),
        release=release,
        project_dirs=_project_dirs(data, projects),
    )
