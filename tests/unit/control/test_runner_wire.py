"""The runner's poll body, read once (issue 15): what passes, what is refused and why."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from claude_bridge.control.runner_wire import (
    MAX_TAIL,
    MAX_WAIT,
    WireError,
    parse_poll,
    project_problem,
)

SID = str(uuid.uuid4())


def body(**fields: Any) -> dict[str, Any]:
    return {"host": "laptop", "projects": ["api"], **fields}


def test_a_minimal_poll_has_defaults() -> None:
    poll = parse_poll({"host": "laptop"})
    assert poll.projects == [] and poll.accept_from is None and poll.wait == 25
    assert poll.sessions == [] and poll.results == [] and poll.exits == []


def test_a_full_poll_is_read() -> None:
    poll = parse_poll(
        body(
            accept_from=["@alice:example.org"],
            max_sessions=4,
            sessions=[
                {"session_id": SID, "project": "api", "tmux": "claude-api-1", "job_id": None}
            ],
            results=[{"job_id": "j1", "ok": False, "error": "no such project"}],
            exits=[{"session_id": SID, "status": 0, "tail": "x" * (MAX_TAIL + 10)}],
            wait=600,
        )
    )
    assert poll.accept_from == ["@alice:example.org"]
    assert poll.sessions[0].tmux == "claude-api-1" and poll.sessions[0].state == "running"
    assert poll.results[0].error == "no such project" and not poll.results[0].ok
    assert len(poll.exits[0].tail) == MAX_TAIL  # the last lines are kept
    assert poll.wait == MAX_WAIT
    assert poll.project_dirs == {}  # a runner that does not say


def test_project_dirs_are_read_for_the_projects_offered() -> None:
    poll = parse_poll(body(project_dirs={"api": "/home/me/src/api"}))
    assert poll.project_dirs == {"api": "/home/me/src/api"}


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"host": "a b"}, "host"),
        ({"host": "-x"}, "host"),
        ({"host": None}, "host must be a string"),
        ({"projects": "api"}, "projects must be a list"),
        ({"projects": [".."]}, "`..`"),
        ({"projects": ["a/../b"]}, "`..`"),
        ({"projects": ["/srv/api"]}, "paths"),
        ({"projects": ["~/api"]}, "paths"),
        ({"projects": ["api x"]}, "not a project name"),
        ({"max_sessions": -1}, "max_sessions"),
        ({"max_sessions": True}, "max_sessions"),
        ({"accept_from": ["alice"]}, "accept_from"),
        ({"wait": -1}, "negative"),
        ({"wait": True}, "wait"),
        ({"results": [{"job_id": "j", "ok": 1}]}, "ok"),
        ({"results": [{"job_id": "j k", "ok": True}]}, "job_id"),
        ({"sessions": [{"session_id": SID.upper(), "project": "api", "tmux": "t"}]}, "session_id"),
        ({"sessions": [{"session_id": SID, "project": "api", "tmux": "a b"}]}, "tmux"),
        ({"sessions": ["x"]}, "object"),
        ({"exits": [{"session_id": SID, "status": "1"}]}, "status"),
        ({"exits": [{"session_id": SID, "tail": "a\x00b"}]}, "cannot be stored"),
        ({"results": [{"job_id": "j", "ok": True}] * 501}, "more than 500"),
        ({"project_dirs": ["/srv/api"]}, "NAME: DIR"),
        ({"project_dirs": {"web": "/srv/web"}}, "not in projects"),
        ({"project_dirs": {"api": "srv/api"}}, "absolute"),
        ({"project_dirs": {"api": "/srv/api\n"}}, "printable"),
        ({"project_dirs": {"api": "/srv/\x00"}}, "cannot be stored"),
        ({"project_dirs": {"api": 7}}, "must be a string"),
        ({"project_dirs": {"api": "/" + "a" * 4096}}, "longer than"),
    ],
)
def test_bad_fields_are_refused_with_a_reason(fields: dict[str, Any], says: str) -> None:
    with pytest.raises(WireError, match=None) as e:
        parse_poll(body(**fields))
    assert says in str(e.value)


def test_project_names_are_names_never_paths() -> None:
    assert project_problem("api") is None and project_problem("web.v2") is None
    for bad in ("", ".", "..", "../x", "x/..", "/abs", "a/b", "a\\b", "~root", "-x"):
        assert project_problem(bad) is not None, bad


@pytest.mark.parametrize(
    "fields",
    [
        {"host": "laptop\n"},  # `$` matches before a final line break
        {"projects": ["api\n"]},
        {"sessions": [{"session_id": SID + "\n", "project": "api", "tmux": "t"}]},
        {"sessions": [{"session_id": SID, "project": "api", "tmux": "t\n"}]},
        {"results": [{"job_id": "j1\n", "ok": True}]},
        {"exits": [{"session_id": SID + "\n", "status": 0}]},
    ],
)
def test_a_trailing_line_break_is_no_name(fields: dict[str, Any]) -> None:
    """A host, project, session, tmux or job name is all of the string: "laptop\n" is another
    runner than "laptop" (and a line of its own in `hosts`), so it is refused."""
    with pytest.raises(WireError):
        parse_poll(body(**fields))
    assert project_problem("api\n") is not None
