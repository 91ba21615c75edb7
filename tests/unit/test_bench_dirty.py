"""A benchmark result says when the code that ran is not the commit's: changed or untracked
files under the code paths, a bridge launcher script, config overrides in the environment."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench.stack import git_revision


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "claude_bridge").mkdir(parents=True)
    (repo / "migrations").mkdir()
    (repo / "bench" / "results").mkdir(parents=True)
    (repo / "claude_bridge" / "app.py").write_text("x = 1\n")
    (repo / "migrations" / "001_initial.sql").write_text("-- v1: initial\n")
    (repo / "README.md").write_text("docs\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    return repo


def test_clean_tree_and_docs_or_results_are_not_dirty(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "README.md").write_text("more docs\n")
    (repo / "bench" / "results" / "new.json").write_text("{}")
    got = git_revision({}, repo)
    assert got["dirty"] is False and got["dirty_because"] == []
    assert len(got["commit"]) == 40


def test_an_untracked_migration_makes_it_dirty(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "migrations" / "002_extra.sql").write_text("-- v2: extra\n")
    got = git_revision({}, repo)
    assert got["dirty"] is True
    assert got["dirty_because"] == ["untracked: migrations/002_extra.sql"]


def test_a_changed_file_makes_it_dirty(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "claude_bridge" / "app.py").write_text("x = 2\n")
    assert git_revision({}, repo)["dirty_because"] == ["changed: claude_bridge/app.py"]


def test_a_launcher_or_config_overrides_make_it_dirty(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    env = {
        "BENCH_BRIDGE_LAUNCHER": "/tmp/patched.py",
        "CLAUDE_BRIDGE__HOOKS__GROUP_COMMIT": "false",
        "HOME": "/root",
    }
    got = git_revision(env, repo)
    assert got["dirty"] is True
    assert got["dirty_because"] == [
        "BENCH_BRIDGE_LAUNCHER=/tmp/patched.py",
        "CLAUDE_BRIDGE__HOOKS__GROUP_COMMIT=false",
    ]


def test_an_override_that_may_be_a_secret_keeps_its_key_and_hides_its_value(
    tmp_path: Path,
) -> None:
    """Results files are committed: a hook token, a password or a DSN given as an override must
    not ride along into one."""
    repo = _repo(tmp_path)
    env = {
        "CLAUDE_BRIDGE__HOOKS__TOKENS__ALICE": "hunter2",
        "CLAUDE_BRIDGE__APPSERVICE__AS_TOKEN": "x" * 40,
        "CLAUDE_BRIDGE__STORE__PASSWORD": "short",
        "CLAUDE_BRIDGE__STORE__DSN": "postgresql://bench:s3cret@127.0.0.1/bench",
        "CLAUDE_BRIDGE__RUNNER__SOMETHING": "a value with spaces",
        "CLAUDE_BRIDGE__EVENT_LOOP": "asyncio",
        "CLAUDE_BRIDGE__HOOKS__ADDRESS": "127.0.0.1:9000",
    }
    got = git_revision(env, repo)
    assert got["dirty"] is True
    assert got["dirty_because"] == [
        "CLAUDE_BRIDGE__APPSERVICE__AS_TOKEN=<hidden>",
        "CLAUDE_BRIDGE__EVENT_LOOP=asyncio",
        "CLAUDE_BRIDGE__HOOKS__ADDRESS=127.0.0.1:9000",
        "CLAUDE_BRIDGE__HOOKS__TOKENS__ALICE=<hidden>",
        "CLAUDE_BRIDGE__RUNNER__SOMETHING=<hidden>",
        "CLAUDE_BRIDGE__STORE__DSN=<hidden>",
        "CLAUDE_BRIDGE__STORE__PASSWORD=<hidden>",
    ]
    assert not any(s in str(got) for s in ("hunter2", "s3cret", "x" * 40, "short"))
