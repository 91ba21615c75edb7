"""install-hooks: merging into an existing settings.json, idempotence, uninstall, secrets."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from claude_bridge import installer
from claude_bridge.cli import install_hooks
from claude_bridge.events.catalogue import HELD

URL = "http://127.0.0.1:29341"
ENDPOINT = URL + "/claude/v1/hooks"
SECRET = "tok_9f8e7d6c5b4a39281706f5e4d3c2b1a0"

# A user's settings with hooks of their own on events we also use, and unrelated keys.
ORIGINAL: dict[str, Any] = {
    "$schema": "https://json.schemastore.org/claude-code-settings.json",
    "permissions": {"allow": ["Bash(npm run test:*)"], "deny": ["Read(./.env)"]},
    "env": {"FOO": "bar"},
    "hooks": {
        "PreToolUse": [
            {
                "matcher": "Bash",
                "hooks": [{"type": "command", "command": "~/bin/check-bash.sh", "timeout": 5}],
            }
        ],
        "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}],
        "SessionStart": [
            {"matcher": "startup", "hooks": [{"type": "command", "command": "cat NOTES.md"}]}
        ],
        "PostToolUse": [
            {
                "matcher": "Edit|Write",
                "hooks": [{"type": "http", "url": "http://localhost:8080/lint"}],
            }
        ],
    },
    "model": "opus",
}

TOOL_EVENTS = ("PreToolUse", "PermissionRequest", "PostToolUse", "PostToolUseFailure")


@pytest.fixture(autouse=True)
def user_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never read or write the real ~/.claude from a test."""
    path = tmp_path / "cfg"
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(path))
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Path:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(ORIGINAL, indent=4) + "\n")
    return path


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def ours(data: dict[str, Any], event: str) -> list[dict[str, Any]]:
    """Our handlers for ``event``, without the background waiter (see ``waiters``)."""
    return [h for h in _all_ours(data, event) if not h.get("asyncRewake")]


def waiters(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Our background waiters (asyncRewake command hooks), on any event."""
    return [h for e in data.get("hooks", {}) for h in _all_ours(data, e) if h.get("asyncRewake")]


def _all_ours(data: dict[str, Any], event: str) -> list[dict[str, Any]]:
    return [h for g in data["hooks"].get(event, []) for h in g["hooks"] if installer.is_ours(h)]


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="claude-bridge")
    sub = parser.add_subparsers(required=True)
    install_hooks.add_subcommand(sub)
    args = parser.parse_args(list(argv))
    result: int = args.func(args)
    return result


def test_install_merges_without_touching_other_settings(settings: Path) -> None:
    before = settings.read_bytes()

    assert installer.install(settings, url=URL) is True

    data = load(settings)
    for key in ("$schema", "permissions", "env", "model"):
        assert data[key] == ORIGINAL[key]
    assert list(data)[:4] == list(ORIGINAL)[:4]  # key order kept
    for event, groups in ORIGINAL["hooks"].items():
        assert data["hooks"][event][: len(groups)] == groups  # theirs first, unchanged
    assert settings.with_name("settings.json.bak").read_bytes() == before

    expected = {name for name, _ in installer.events_for()}
    assert {e for e in data["hooks"] if ours(data, e)} == expected
    assert all(len(ours(data, e)) == 1 for e in expected)


def test_install_uses_http_hooks_with_the_token_from_the_environment(settings: Path) -> None:
    installer.install(settings, url=URL + "/")
    data = load(settings)

    [pre] = ours(data, "PreToolUse")
    assert pre == {
        "type": "http",
        "url": ENDPOINT,
        "timeout": 10,
        "headers": {"Authorization": "Bearer $CLAUDE_BRIDGE_TOKEN"},
        "allowedEnvVars": ["CLAUDE_BRIDGE_TOKEN"],
    }
    for event in TOOL_EVENTS:
        assert data["hooks"][event][-1]["matcher"] == "*"
    for event in ("UserPromptSubmit", "Stop", "PostToolBatch", "MessageDisplay"):
        assert "matcher" not in data["hooks"][event][-1]  # events without matcher support

    # Claude Code doesn't run http hooks for SessionStart and Setup: the shim does.
    for event in ("SessionStart", "Setup"):
        [handler] = ours(data, event)
        assert handler["type"] == "command"
        assert handler["command"].startswith(f"claude-bridge-hook --url {URL} ")


def test_timeouts_long_only_where_the_bridge_may_wait_for_a_human(settings: Path) -> None:
    installer.install(settings, url=URL)
    data = load(settings)
    timeouts = {e: ours(data, e)[0]["timeout"] for e in data["hooks"] if ours(data, e)}

    assert timeouts["PermissionRequest"] == timeouts["Stop"] == HELD
    assert timeouts["SessionEnd"] > 1.5  # the default SessionEnd budget would cut us off
    short = {e: t for e, t in timeouts.items() if e not in ("PermissionRequest", "Stop")}
    assert max(short.values()) <= 10


def test_second_install_is_byte_identical(settings: Path) -> None:
    installer.install(settings, url=URL)
    first = settings.read_bytes()
    first_mtime = settings.stat().st_mtime_ns

    assert installer.install(settings, url=URL) is False
    assert settings.read_bytes() == first
    assert settings.stat().st_mtime_ns == first_mtime  # not even rewritten


def test_durable_installs_the_shim_for_every_event(settings: Path) -> None:
    installer.install(settings, url=URL)
    assert installer.install(settings, url=URL, durable=True) is True  # http → command

    data = load(settings)
    for name, spec in installer.events_for():
        [handler] = ours(data, name)
        assert handler["type"] == "command"
        assert handler["command"] == (
            f"claude-bridge-hook --url {URL} --timeout {spec.timeout - installer.SHIM_MARGIN}"
        )
        assert handler["timeout"] == spec.timeout
    assert installer.install(settings, url=URL, durable=True) is False


def test_reinstall_with_another_url_replaces_ours_only(settings: Path) -> None:
    installer.install(settings, url=URL)
    installer.install(settings, url="https://bridge.example.org/prefix")
    data = load(settings)

    [pre] = ours(data, "PreToolUse")
    assert pre["url"] == "https://bridge.example.org/prefix/claude/v1/hooks"
    assert data["hooks"]["PreToolUse"][0] == ORIGINAL["hooks"]["PreToolUse"][0]


def test_uninstall_restores_the_original(settings: Path) -> None:
    installer.install(settings, url=URL, durable=True)
    installer.install(settings, url=URL)

    assert installer.uninstall(settings) is True
    assert load(settings) == ORIGINAL
    assert settings.read_text() == json.dumps(ORIGINAL, indent=4) + "\n"  # its indentation
    assert installer.uninstall(settings) is False


def test_uninstall_removes_containers_it_emptied(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text('{"hooks": {"FileChanged": []}, "theme": "dark"}')
    installer.install(settings, url=URL)
    installer.uninstall(settings)
    assert load(settings) == {"hooks": {"FileChanged": []}, "theme": "dark"}

    fresh = tmp_path / "fresh" / "settings.json"
    assert installer.install(fresh, url=URL) is True  # creates file and directory
    installer.uninstall(fresh)
    assert load(fresh) == {}


def test_uninstall_keeps_user_handlers_sharing_a_group_with_ours(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    mine = {"type": "command", "command": "echo mine"}
    shim = {"type": "command", "command": "claude-bridge-hook --url http://x"}
    settings.write_text(json.dumps({"hooks": {"Stop": [{"hooks": [mine, shim]}]}}))

    installer.uninstall(settings)

    assert load(settings) == {"hooks": {"Stop": [{"hooks": [mine]}]}}


def test_only_events_the_claude_version_knows(settings: Path) -> None:
    installer.install(settings, url=URL, claude_version=(2, 1, 197))
    data = load(settings)
    for newer in ("DirectoryAdded", "PreModelSwitch", "PostModelSwitch"):
        assert newer not in data["hooks"]

    assert installer.install(settings, url=URL, claude_version=(2, 1, 260)) is True
    data = load(settings)
    for newer in ("DirectoryAdded", "PreModelSwitch", "PostModelSwitch"):
        assert ours(data, newer)


def test_events_that_replace_claude_code_behaviour_are_never_installed(settings: Path) -> None:
    installer.install(settings, url=URL, claude_version=(9, 0, 0))
    data = load(settings)
    for event in ("WorktreeCreate", "WorktreeRemove", "FileChanged"):
        assert event not in data["hooks"]
    for event in ("PostToolUseFailure", "PostToolBatch", "SubagentStart", "StopFailure"):
        assert ours(data, event)


def test_invalid_json_is_left_alone(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text('{"hooks": {,}')
    with pytest.raises(installer.InstallError):
        installer.install(settings, url=URL)
    assert settings.read_text() == '{"hooks": {,}'


def test_dry_run_writes_nothing(settings: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = settings.read_bytes()
    assert cli("install-hooks", "--project", str(settings.parent), "--url", URL) == 0
    capsys.readouterr()
    local = settings.parent / ".claude" / "settings.local.json"
    content = local.read_bytes()

    assert cli("install-hooks", "--project", str(settings.parent), "--uninstall", "--dry-run") == 0
    assert "would remove" in capsys.readouterr().out
    assert local.read_bytes() == content
    assert settings.read_bytes() == before


def test_project_install_never_writes_the_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for shared in ([], ["--shared"]):
        argv = ["install-hooks", "--project", str(project), "--url", URL, "--token", SECRET]
        assert cli(*argv, *shared, "--claude-version", "2.1.197") == 0
        assert cli(*argv, *shared, "--durable", "--claude-version", "2.1.197") == 0

    out = capsys.readouterr().out
    assert f"export CLAUDE_BRIDGE_TOKEN={SECRET}" in out  # told, not written
    written = list(project.rglob("*"))
    assert {p.name for p in written if p.is_file()} >= {"settings.json", "settings.local.json"}
    for path in written:
        if path.is_file():
            assert SECRET not in path.read_text()
    shared_hooks = load(project / ".claude" / "settings.json")["hooks"]
    # A committed file names the shim, not this machine's path to it.
    assert ours({"hooks": shared_hooks}, "SessionStart")[0]["command"].startswith(
        "claude-bridge-hook "
    )


def test_token_name_is_resolved_only_into_the_printed_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "cfg"))
    argv = ["install-hooks", "--user", "--url", URL, "--claude-version", "2.1.197"]
    assert cli(*argv, "--token", "laptop", "--token-env", "MY_BRIDGE_TOKEN") == 0

    out = capsys.readouterr().out
    assert "export MY_BRIDGE_TOKEN='<secret of laptop>'" in out
    data = load(tmp_path / "cfg" / "settings.json")  # $CLAUDE_CONFIG_DIR is honoured
    [pre] = ours(data, "PreToolUse")
    assert pre["headers"] == {"Authorization": "Bearer $MY_BRIDGE_TOKEN"}
    assert pre["allowedEnvVars"] == ["MY_BRIDGE_TOKEN"]
    [start] = ours(data, "SessionStart")
    assert "--token-env MY_BRIDGE_TOKEN" in start["command"]


def test_cli_reports_already_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path))
    argv = ["install-hooks", "--url", URL, "--claude-version", "2.1.197", "--hook-command"]
    assert cli(*argv, "claude-bridge-hook") == 0
    assert "installed" in capsys.readouterr().out
    assert cli(*argv, "claude-bridge-hook") == 0
    assert "already installed" in capsys.readouterr().out


def test_rejects_bad_input(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    with pytest.raises(installer.InstallError):
        installer.install(settings, url="ftp://example.org")
    with pytest.raises(installer.InstallError):
        installer.install(settings, url=URL, token_env="NOT A NAME")
    with pytest.raises(installer.InstallError):
        installer.install(settings, url=URL, hook_command="/opt/unrecognisable")
    assert not settings.exists()


def test_symlinked_settings_file_stays_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "dotfiles" / "claude-settings.json"
    target.parent.mkdir()
    target.write_text(json.dumps(ORIGINAL))
    link = tmp_path / ".claude" / "settings.json"
    link.parent.mkdir()
    link.symlink_to(target)

    assert installer.install(link, url=URL) is True

    assert link.is_symlink()
    assert ours(load(target), "PreToolUse")
    installer.uninstall(link)
    assert load(target) == ORIGINAL


def test_warns_when_another_scope_already_has_our_hooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "cfg"))
    project = tmp_path / "project"
    common = ["--url", URL, "--claude-version", "2.1.197"]
    assert cli("install-hooks", "--user", *common) == 0
    assert "also in" not in capsys.readouterr().err

    assert cli("install-hooks", "--project", str(project), *common) == 0
    assert f"also in {tmp_path / 'cfg' / 'settings.json'}" in capsys.readouterr().err


def test_claude_version_is_detected_from_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "claude"
    fake.write_text("#!/bin/sh\necho '2.1.260 (Claude Code)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")

    assert cli("install-hooks", "--url", URL) == 0

    data = load(tmp_path / "cfg" / "settings.json")
    assert ours(data, "PreModelSwitch")


def test_token_name_resolved_through_the_bridge_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"hooks:\n  tokens:\n    laptop: {SECRET}\n")
    argv = ["install-hooks", "--url", URL, "--claude-version", "2.1.197"]

    assert cli(*argv, "--token", "laptop", "--config", str(config)) == 0

    assert f"export CLAUDE_BRIDGE_TOKEN={SECRET}" in capsys.readouterr().out
    assert SECRET not in (tmp_path / "cfg" / "settings.json").read_text()


def test_the_stop_group_also_starts_the_background_waiter(settings: Path) -> None:
    installer.install(settings, url=URL, hook_command="claude-bridge-hook")
    data = load(settings)

    [waiter] = waiters(data)
    [group] = [g for g in data["hooks"]["Stop"] if waiter in g["hooks"]]
    assert group["hooks"][0] == ours(data, "Stop")[0]  # the Stop hook itself runs first
    assert waiter == {
        "type": "command",
        "command": f"claude-bridge-hook --url {URL} --timeout "
        f"{installer.WAIT - installer.SHIM_MARGIN} wait",
        "timeout": installer.WAIT,
        "async": True,
        "asyncRewake": True,
    }
    assert installer.install(settings, url=URL, hook_command="claude-bridge-hook") is False


def test_waiter_follows_token_env_and_can_be_left_out(settings: Path) -> None:
    installer.install(settings, url=URL, token_env="OTHER_TOKEN")
    [waiter] = waiters(load(settings))
    assert "--token-env OTHER_TOKEN" in waiter["command"]

    assert installer.install(settings, url=URL, token_env="OTHER_TOKEN", wake=False) is True
    data = load(settings)
    assert waiters(data) == [] and len(ours(data, "Stop")) == 1
    assert installer.install(settings, url=URL, token_env="OTHER_TOKEN", wake=False) is False

    assert cli("install-hooks", "--user", "--url", URL, "--no-wake") == 0
    assert waiters(load(installer.user_settings_path())) == []


def test_uninstall_removes_the_waiter_too(settings: Path) -> None:
    installer.install(settings, url=URL)
    assert installer.uninstall(settings) is True
    assert load(settings) == ORIGINAL


def test_personal_install_runs_the_shim_isolated_from_this_python(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No site, no .pth, no PYTHON* environment: the shim needs only the standard library."""
    argv = installer.fast_shim_argv()
    python, flags, loader = argv[0], argv[1:4], argv[4]
    assert python == sys.executable and Path(python).is_absolute()
    assert flags == ["-I", "-S", "-c"]
    root = Path(installer.__file__).parent.parent
    assert loader == (
        f'import sys;sys.path.append("{root}");from claude_bridge.shim import run;run()'
    )

    assert cli("install-hooks", "--user", "--url", URL, "--durable") == 0
    data = load(tmp_path / "cfg" / "settings.json")
    for event in ("SessionStart", "PreToolUse", "Stop"):
        [handler] = ours(data, event)
        assert handler["command"].startswith(f"{shlex.join(argv)} --url {URL} --timeout ")
    [waiter] = waiters(data)
    assert waiter["command"] == (
        f"{shlex.join(argv)} --url {URL} --timeout {installer.WAIT - installer.SHIM_MARGIN} wait"
    )
    assert cli("install-hooks", "--user", "--url", URL, "--durable") == 0
    assert "already installed" in capsys.readouterr().out


def test_the_loader_survives_any_path(tmp_path: Path) -> None:
    """Quotes, spaces and backslashes in the install path stay one shell word and one literal."""
    import subprocess

    for name in ["it's here", 'say "hi"', "back\\slash", "sp ace", "ünï"]:
        root = tmp_path / name
        (root / "claude_bridge").mkdir(parents=True)
        (root / "claude_bridge" / "__init__.py").write_text("")
        (root / "claude_bridge" / "shim.py").write_text(
            "def run():\n    import sys; print(sys.argv[1:], end='')\n"
        )
        loader = installer.fast_shim_argv()[4].replace(
            json.dumps(str(Path(installer.__file__).parent.parent)), json.dumps(str(root))
        )
        command = shlex.join([sys.executable, "-I", "-S", "-c", loader, "--url", "x"])
        out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
        assert out.stdout == "['--url', 'x']"


SHIM_FORMS = [
    "claude-bridge-hook",
    "/home/dev/.venv/bin/claude-bridge-hook",
    "'/home/dev/my venv/bin/claude-bridge-hook'",
    "/usr/bin/python3 -m claude_bridge.shim",
    "/home/dev/.venv/bin/python -I -S /home/dev/src/claude_bridge/shim.py",
    shlex.join(installer.fast_shim_argv()),
]


@pytest.mark.parametrize("form", SHIM_FORMS)
def test_every_form_of_the_shim_is_ours(form: str, settings: Path) -> None:
    """Old installs (console script, -m) and new ones (script, loader) are all recognised:
    reinstalling replaces them, uninstalling removes them."""
    command = f"{form} --url {URL} --timeout 8"
    assert installer.is_ours({"type": "command", "command": command})
    assert installer.is_ours({"type": "command", "command": f"{command} wait", "async": True})

    installer.install(settings, url=URL, durable=True, hook_command=form)
    data = load(settings)
    assert ours(data, "PreToolUse")[0]["command"] == command
    assert installer.install(settings, url=URL, durable=True, hook_command=form) is False

    fast = installer.default_hook_command(False)
    assert installer.install(settings, url=URL, durable=True, hook_command=fast) is (form != fast)
    data = load(settings)
    for name, _ in installer.events_for():
        [handler] = ours(data, name)
        assert handler["command"].startswith(f"{fast} --url {URL} ")
    assert len(waiters(data)) == 1

    assert installer.uninstall(settings) is True
    assert load(settings) == ORIGINAL


def test_not_every_python_command_is_ours() -> None:
    for command in ["python3 ~/bin/lint.py", "python -m mytool.shim", "/opt/claude_bridge/run.sh"]:
        assert not installer.is_ours({"type": "command", "command": command})


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--token", "", '--token is empty (if you wrote --token "$CLAUDE_BRIDGE_TOKEN"'),
        ("--token", "  ", "--token is empty"),
        ("--url", "", '--url is empty (if you wrote --url "$CLAUDE_BRIDGE_URL"'),
        ("--url", " ", "--url is empty"),
    ],
)
def test_an_empty_token_or_url_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, says: str
) -> None:
    """``--token "$CLAUDE_BRIDGE_TOKEN"`` in a shell without the export: no garbled export
    line, no settings written."""
    argv = {"--url": URL, "--token": SECRET} | {flag: value}
    args = [a for pair in argv.items() for a in pair]

    assert cli("install-hooks", "--user", *args, "--claude-version", "2.1.332") == 2

    out, err = capsys.readouterr()
    assert says in err and "nothing changed" in err
    assert "export" not in out and "<secret of" not in out
    assert not (tmp_path / "cfg" / "settings.json").exists()


def test_one_claude_code_version_for_the_installer_the_tests_and_the_readme(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """scripts/install-claude-code pins the version install-hooks assumes without ``claude``
    on PATH, and the README and docs/ name that one."""
    repo = Path(__file__).resolve().parents[2]
    import subprocess

    script = repo / "scripts" / "install-claude-code"
    pinned = subprocess.run(
        [script, "--print-version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert pinned == installer.CLAUDE_CODE_VERSION
    readme = (repo / "README.md").read_text()
    assert f"(pinned, {pinned})" in readme
    docs = readme + "".join(p.read_text() for p in sorted((repo / "docs").glob("*.md")))
    mentioned = set(re.findall(r"Claude Code CLI \(?(?:pinned, )?(\d+\.\d+\.\d+)", docs))
    assert mentioned == {pinned}

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no claude
    assert cli("install-hooks", "--user", "--url", URL) == 0
    err = capsys.readouterr().err
    assert f"installing the events of Claude Code {pinned}, the version this bridge" in err
    data = load(tmp_path / "cfg" / "settings.json")
    for event in ("DirectoryAdded", "PreModelSwitch"):  # newer than the captured 2.1.197
        assert ours(data, event)
