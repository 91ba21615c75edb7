"""Carrying out jobs on real tmux (a private server per test) with a stand-in for ``claude``:
idempotent new/resume, at-most-once type/interrupt/end across restarts, and the refusals."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from claude_bridge.installer import claude_version, default_hook_command, desired_hooks, reconcile
from claude_bridge.runner.config import RunnerConfig
from claude_bridge.runner.jobs import Executor
from claude_bridge.runner.journal import INTERRUPTED, lock_state_dir
from claude_bridge.runner.service import run_runner, write_hooks_settings
from claude_bridge.runner.tmux import Tmux
from tests.unit.runner.conftest import eventually, screen

SID = "0b6c2a53-8f0e-4d5e-9d3c-1b2a3c4d5e6f"
ALICE = "@alice:example.org"


def job(kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": fields.pop("id", f"{kind}-{uuid.uuid4().hex[:8]}"),
        "kind": kind,
        "project": "api",
        "session_id": SID,
        "prompt": None,
        "text": None,
        "requested_by": ALICE,
        "room_id": "!room:example.org",
        **fields,
    }


async def test_new_starts_claude_in_tmux_with_the_runners_env(
    make: Callable[[], Executor], tmux: Tmux, config: RunnerConfig
) -> None:
    ex = make()
    await ex.sessions.refresh()
    result = await ex.execute(job("new", id="j1", prompt="-rf /; fix the bug"))
    assert result.ok, result.error
    live = ex.sessions.live[SID]
    assert live.tmux == "claude-api-0b6c2a53" and live.job_id == "j1"
    shown = (await screen(tmux, live.pane_id, "CWD")).replace("\n", "")
    argv = ["--session-id", SID, "--model", "opus", "--settings"]
    argv += [str(config.state_dir / "hooks-settings.json"), "--", "-rf /; fix the bug"]
    assert "ARGV " + json.dumps(argv) in shown
    env = json.loads(shown.split("ENV ", 1)[1].split("}", 1)[0] + "}")
    assert env["CLAUDE_BRIDGE_TOKEN"] == "secret-token-1234567890"
    assert env["RUNNER_TEST_MARK"] == "inherited"
    assert env["TMUX_PANE"] == live.pane_id  # the pane's own, not the runner's
    assert f"CWD {config.projects['api']}" in shown
    assert list((config.state_dir / "launch").iterdir()) == []  # the spec, read and deleted
    assert ex.sessions.report() == [
        {"session_id": SID, "project": "api", "tmux": live.tmux, "job_id": "j1", "state": "running"}
    ]


async def test_redelivered_or_restarted_new_starts_no_duplicate(
    make: Callable[[], Executor], tmux: Tmux
) -> None:
    ex = make()
    assert (await ex.execute(job("new", id="j1", prompt="hi"))).ok
    assert (await ex.execute(job("new", id="j1", prompt="hi"))).ok
    ex.journal.close()
    restarted = make()  # the runner restarts: finds the session in tmux
    await restarted.sessions.refresh()
    assert list(restarted.sessions.live) == [SID]
    assert (await restarted.execute(job("new", id="j1", prompt="hi"))).ok
    assert (
        await restarted.execute(job("new", id="j2", prompt="hi"))
    ).ok  # another id, same session
    assert len(await tmux.panes()) == 1


async def test_a_session_started_just_before_a_crash_is_adopted(
    make: Callable[[], Executor], tmux: Tmux, tmp_path: Path
) -> None:
    # the runner died between tmux's new-session and its options: the name still finds it
    await tmux.run("new-session", "-d", "-s", "claude-api-0b6c2a53", "--", "sleep", "600")
    ex = make()
    await ex.sessions.refresh()
    assert ex.sessions.live == {}
    assert (await ex.execute(job("new", id="j1"))).ok
    await ex.sessions.refresh()
    assert list(ex.sessions.live) == [SID]
    assert len(await tmux.panes()) == 1


async def test_type_interrupt_and_end_act_once_even_across_a_restart(
    make: Callable[[], Executor], tmux: Tmux
) -> None:
    ex = make()
    assert (await ex.execute(job("new", id="j1"))).ok
    pane = ex.sessions.live[SID].pane_id
    await screen(tmux, pane, "CWD")
    typed = job("type", id="t1", text="please run\nthe linter", requested_by="@bob:example.org")
    assert (await ex.execute(typed)).ok
    assert (await ex.execute(typed)).ok  # redelivered: same answer, not typed again
    shown = await screen(tmux, pane, "LINE:")
    assert shown.count("PASTE:") == 1 and '"please run\\nthe linter"' in shown
    ex.journal.close()
    ex = make()
    await ex.sessions.refresh()
    assert (await ex.execute(typed)).ok  # after a restart too
    ex.journal.begin("t2")  # a type job the runner began, then died in the middle of
    ex.journal.close()
    ex = make()
    await ex.sessions.refresh()
    half = await ex.execute(job("type", id="t2", text="again"))
    assert (half.ok, half.error) == (False, INTERRUPTED)
    assert (await ex.execute(job("interrupt", id="i1"))).ok
    assert (await ex.execute(job("interrupt", id="i1"))).ok
    shown = await screen(tmux, pane, "ESC")
    assert shown.count("ESC") == 1 and shown.count("PASTE:") == 1


async def test_end_exits_and_the_exit_is_reported_then_resume_restarts_it(
    make: Callable[[], Executor], tmux: Tmux, config: RunnerConfig
) -> None:
    ex = make()
    assert (await ex.execute(job("new", id="j1"))).ok
    await screen(tmux, ex.sessions.live[SID].pane_id, "CWD")
    assert (await ex.execute(job("end", id="e1"))).ok
    await eventually(ex.sessions.refresh)
    (gone,) = ex.sessions.pending_exits()
    assert (gone.session_id, gone.status) == (SID, 0)
    assert "LINE:/exit" in gone.tail
    assert ex.sessions.report() == []
    resumed = await ex.execute(job("resume", id="r1"))  # before the exit was acknowledged
    assert resumed.ok, resumed.error
    live = ex.sessions.live[SID]
    assert not live.dead and live.key != gone.key
    await screen(tmux, live.pane_id, json.dumps(["--resume", SID])[:-1])
    await ex.sessions.acknowledged([gone])  # kills nothing of the resumed session
    assert [p.pane_id for p in await tmux.panes()] == [live.pane_id]


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"project": "../etc"}, "is a path"),
        ({"project": "/etc"}, "absolute path"),
        ({"project": "web"}, "not configured on laptop"),
        ({"project": "a b"}, "not a project name"),
        ({"session_id": "../../x"}, "not a session id"),
        ({"session_id": SID.upper()}, "not a session id"),
        ({"requested_by": "@mallory:example.org"}, "does not accept jobs from @mallory"),
        ({"kind": "shell"}, "unknown job kind"),
        ({"id": "a b;c"}, "malformed job id"),
    ],
)
async def test_refusals_say_why_and_start_nothing(
    make: Callable[[], Executor], tmux: Tmux, config: RunnerConfig, fields: dict[str, Any], why: str
) -> None:
    config.accept_from = [ALICE]
    ex = make()
    result = await ex.execute({**job("new", prompt="hi"), **fields})
    assert not result.ok and why in (result.error or "")
    assert await tmux.panes() == []


async def test_no_session_to_type_into_and_max_sessions(
    make: Callable[[], Executor], config: RunnerConfig, tmux: Tmux
) -> None:
    ex = make()
    typed = await ex.execute(job("type", text="hello"))
    assert not typed.ok and "not running on laptop" in (typed.error or "")
    config.max_sessions = 1
    assert (await ex.execute(job("new"))).ok
    other = await ex.execute(job("new", session_id=str(uuid.uuid4())))
    assert not other.ok and "already runs 1 sessions" in (other.error or "")
    assert len(await tmux.panes()) == 1


async def test_an_untrusted_folder_is_refused_unless_the_runner_trusts_its_projects(
    make: Callable[[], Executor], config: RunnerConfig, home: Path, tmux: Tmux
) -> None:
    (home / ".claude.json").write_text(
        json.dumps({"hasCompletedOnboarding": True, "theme": "dark"})
    )
    ex = make()
    refused = await ex.execute(job("new"))
    assert not refused.ok and "would ask whether to trust" in (refused.error or "")
    config.trust_projects = True
    assert (await ex.execute(job("new"))).ok
    data = json.loads((home / ".claude.json").read_text())
    assert data["projects"][str(config.projects["api"])] == {"hasTrustDialogAccepted": True}
    assert data["theme"] == "dark"
    (home / ".claude.json").write_text("{}")
    fresh = await ex.execute(job("new", session_id=str(uuid.uuid4())))
    assert not fresh.ok and "onboarding" in (fresh.error or "")


def test_the_hooks_file_is_what_install_hooks_writes(config: RunnerConfig) -> None:
    path = write_hooks_settings(config)
    written = json.loads(path.read_text())
    expected = reconcile(
        {},
        desired_hooks(
            url=config.url,
            hook_command=default_hook_command(False),
            claude_version=claude_version(config.claude),
            wake=False,
        ),
    )
    assert written == expected
    assert all(isinstance(groups, list) for groups in written["hooks"].values())
    assert config.token not in path.read_text()  # the hooks read it from the environment
    assert oct(path.stat().st_mode & 0o777) == "0o600"


async def test_the_runner_stops_at_start_without_tmux_or_with_its_state_in_use(
    config: RunnerConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config.tmux = str(tmp_path / "no-tmux")
    assert await run_runner(config) == 1
    assert "tmux not found" in capsys.readouterr().out
    config.tmux = "tmux"
    held = lock_state_dir(config.state_dir)
    try:
        assert await run_runner(config) == 1
        assert "another runner is using" in capsys.readouterr().out
    finally:
        held.close()
