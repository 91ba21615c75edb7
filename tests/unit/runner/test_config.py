"""The runner's configuration: flags over the YAML file over the environment, and clear errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from claude_bridge.cli import build_parser
from claude_bridge.runner.config import RunnerConfigError, build_config, sanitise_host


@pytest.fixture
def env(tmp_path: Path, fake_claude: Path) -> dict[str, str]:
    return {
        "PATH": f"{fake_claude.parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "CLAUDE_BRIDGE_URL": "http://bridge.test:29341/",
        "CLAUDE_BRIDGE_TOKEN": "env-token",
    }


@pytest.fixture
def api(tmp_path: Path) -> Path:
    d = tmp_path / "src" / "api"
    d.mkdir(parents=True)
    return d


def flags(**given: Any) -> dict[str, Any]:
    return given


def test_flags_and_environment(env: dict[str, str], api: Path, fake_claude: Path) -> None:
    config = build_config(flags(project=[f"api={api}"], host="Alice's MacBook.local"), env)
    assert config.url == "http://bridge.test:29341"
    assert config.token == "env-token"
    assert config.host == "alice-s-macbook"
    assert config.projects == {"api": api}
    assert config.claude == str(fake_claude)  # found on PATH
    assert (config.max_sessions, config.wait, config.accept_from) == (4, 25, None)
    assert (
        config.state_dir == Path(env["HOME"]) / ".local/state/claude-bridge/runner-alice-s-macbook"
    )


def test_yaml_file_with_flags_winning(env: dict[str, str], api: Path, tmp_path: Path) -> None:
    web = tmp_path / "web"
    web.mkdir()
    os.symlink(web, tmp_path / "web-link")
    path = tmp_path / "runner.yaml"
    path.write_text(
        f"url: http://yaml.test:1\nhost: box\nprojects:\n  api: {api}\n  web: {tmp_path}/web-link\n"
        "args: ['--model', 'opus']\nmax_sessions: 2\naccept_from: ['@alice:example.org']\n"
        "trust_projects: true\n"
    )
    config = build_config(flags(url="http://flag.test:2", max_sessions=3), env, path)
    assert config.url == "http://flag.test:2"
    assert config.host == "box"
    assert config.projects == {"api": api, "web": web}  # resolved
    assert config.args == ["--model", "opus"]
    assert config.max_sessions == 3
    assert config.accept_from == ["@alice:example.org"]
    assert config.trust_projects is True


@pytest.mark.parametrize(
    ("given", "yaml", "why"),
    [
        ({"project": ["../x=/tmp"]}, None, "is a path"),
        ({"project": ["api"]}, None, "write NAME=DIR"),
        ({"project": ["a.b=/tmp"]}, None, "not a project name"),
        ({"project": ["api=/no/such/dir"]}, None, "is not a directory"),
        ({}, None, "no projects"),
        ({"url": "ftp://x"}, None, "--url must be http"),
        ({"claude": "/no/claude"}, None, "Claude Code not found"),
        ({"accept_from": ["alice"]}, None, "not Matrix user ids"),
        ({"max_sessions": 0}, None, "positive"),
        ({"wait": 90}, None, "at most 55"),
        ({}, "projects: [api]\n", "mapping NAME: DIR"),
        ({}, "shell: true\n", "unknown setting(s) shell"),
        ({}, "url: [\n", "not valid YAML"),
    ],
)
def test_refused_with_a_reason(
    env: dict[str, str],
    api: Path,
    tmp_path: Path,
    given: dict[str, Any],
    yaml: str | None,
    why: str,
) -> None:
    if "project" not in given and yaml is None and given:
        given["project"] = [f"api={api}"]
    path = None
    if yaml is not None:
        path = tmp_path / "runner.yaml"
        path.write_text(yaml)
    with pytest.raises(RunnerConfigError, match=why.replace("(", r"\(").replace(")", r"\)")):
        build_config(given, env, path)


def test_no_url_no_token(env: dict[str, str], api: Path) -> None:
    with pytest.raises(RunnerConfigError, match="no bridge URL"):
        build_config(flags(project=[f"api={api}"]), {**env, "CLAUDE_BRIDGE_URL": ""})
    with pytest.raises(RunnerConfigError, match="no hook token"):
        build_config(flags(project=[f"api={api}"]), {**env, "CLAUDE_BRIDGE_TOKEN": " "})


def test_a_token_in_a_file_others_can_read_is_refused(
    env: dict[str, str], api: Path, tmp_path: Path
) -> None:
    path = tmp_path / "runner.yaml"
    path.write_text(f"token: s3cret\nprojects:\n  api: {api}\n")
    path.chmod(0o644)
    with pytest.raises(RunnerConfigError, match="chmod 600"):
        build_config({}, env, path)
    path.chmod(0o600)
    assert build_config({}, env, path).token == "s3cret"


def test_the_subcommand_parses_its_flags() -> None:
    args = build_parser().parse_args(
        [
            "runner",
            "--project",
            "api=/a",
            "--project",
            "web=/w",
            "--arg=--model",
            "--arg=opus",
            "--accept-from",
            "@a:b",
            "--max-sessions",
            "2",
        ]
    )
    assert args.project == ["api=/a", "web=/w"]
    assert args.arg == ["--model", "opus"]
    assert (args.accept_from, args.max_sessions) == (["@a:b"], 2)


def test_host_names() -> None:
    assert sanitise_host("LAPTOP") == "laptop"
    assert sanitise_host("--") == "host"
    assert len(sanitise_host("x" * 100)) == 63
