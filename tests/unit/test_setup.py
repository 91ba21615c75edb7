"""``CLAUDE_BRIDGE__…`` environment overrides and ``claude-bridge setup`` (idempotent)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from claude_bridge.cli import main
from claude_bridge.config import ConfigError, PermissionLevel, env_overrides, load_config
from claude_bridge.config.example import render_example
from claude_bridge.provision import provision
from claude_bridge.registration import build_registration

COMPOSE_ENV = {
    "CLAUDE_BRIDGE__HOMESERVER__ADDRESS": "http://synapse:8008",
    "CLAUDE_BRIDGE__HOMESERVER__DOMAIN": "example.org",
    "CLAUDE_BRIDGE__APPSERVICE__HOSTNAME": "0.0.0.0",
    "CLAUDE_BRIDGE__APPSERVICE__PORT": "29340",
    "CLAUDE_BRIDGE__APPSERVICE__ADDRESS": "http://bridge:29340",
    "CLAUDE_BRIDGE__DATABASE": "postgres://claude_bridge:pw@postgres/claude_bridge",
    "CLAUDE_BRIDGE__HOOKS__LISTEN": "0.0.0.0:29341",
    "CLAUDE_BRIDGE__HOOKS__TOKENS__LAPTOP": "a-long-enough-hook-token-123",
    "CLAUDE_BRIDGE__BRIDGE__PERMISSIONS": '{"@boss:example.org": admin, "example.org": operator}',
    "CLAUDE_BRIDGE_URL": "http://not-an-override",  # one underscore: not ours
}


def test_env_overrides_map_to_dotted_keys_and_typed_values(tmp_path: Path) -> None:
    assert env_overrides(COMPOSE_ENV)[("hooks", "tokens", "laptop")] == (
        "a-long-enough-hook-token-123"
    )
    assert ("claude_bridge_url",) not in env_overrides(COMPOSE_ENV)
    path = tmp_path / "config.yaml"
    path.write_text(render_example())
    config = load_config(path, COMPOSE_ENV)
    assert config.homeserver.domain == "example.org"
    assert config.appservice.port == 29340  # a string in the environment, an int in the model
    assert config.hooks.host == "0.0.0.0" and config.hooks.port == 29341
    assert config.hooks.tokens == {"laptop": "a-long-enough-hook-token-123"}
    assert config.bridge.permissions == {
        "@boss:example.org": PermissionLevel.ADMIN,
        "example.org": PermissionLevel.OPERATOR,
    }
    # Without the environment the file's own values stand.
    assert load_config(path, {}).homeserver.domain == "localhost"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CLAUDE_BRIDGE__HOOKS__LISTEN": "nope"}, "hooks.listen"),
        ({"CLAUDE_BRIDGE__HOOKS__LISTN": "x"}, "hooks.listn: unknown key"),
        ({"CLAUDE_BRIDGE__BRIDGE__RETENTION": "-1"}, "bridge.retention"),
        ({"CLAUDE_BRIDGE__HOOKS____X": "1"}, "empty key segment"),
        ({"CLAUDE_BRIDGE__BRIDGE__PERMISSIONS": "{oops: [}"}, "not valid YAML"),
    ],
)
def test_bad_overrides_name_the_key_and_the_environment(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(render_example())
    with pytest.raises(ConfigError) as err:
        load_config(path, env)
    assert message in str(err.value)


def test_setup_writes_config_and_registration_once(tmp_path: Path) -> None:
    config_path = tmp_path / "data" / "config.yaml"
    registration = tmp_path / "registration" / "claude-registration.yaml"
    done = provision(config_path, registration, COMPOSE_ENV)
    assert len(done) == 3, done  # config, appservice tokens, registration (hook token from env)

    # The file alone (no environment) now holds the overrides, typed, and fresh tokens.
    config = load_config(config_path, {})
    assert config.homeserver.address == "http://synapse:8008"
    assert config.appservice.port == 29340
    assert "port: 29340\n" in config_path.read_text()
    assert config.database.startswith("postgres://")
    assert config.appservice.as_token != "generate" != config.appservice.hs_token
    assert config.bridge.permissions["@boss:example.org"] == PermissionLevel.ADMIN
    assert "# Client-server API URL" in config_path.read_text()  # the example's comments kept
    assert YAML(typ="safe").load(registration.read_text()) == build_registration(config)
    for path in (config_path, registration):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    # Again: nothing to do, nothing changes.
    before = (config_path.read_text(), registration.read_text())
    assert provision(config_path, registration, COMPOSE_ENV) == []
    assert (config_path.read_text(), registration.read_text()) == before

    # A registration that drifted (or was lost) is rewritten from the config, tokens kept.
    registration.write_text("id: something-else\n")
    assert provision(config_path, registration, COMPOSE_ENV) == [
        f"wrote {registration} (restart Synapse if it was running)"
    ]
    assert YAML(typ="safe").load(registration.read_text()) == build_registration(config)


def test_setup_generates_a_hook_token_when_none_is_configured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in __import__("os").environ if n.startswith("CLAUDE_BRIDGE__")]:
        monkeypatch.delenv(name)
    config_path, registration = tmp_path / "config.yaml", tmp_path / "reg.yaml"
    args = ["setup", "--config", str(config_path), "--registration", str(registration)]
    assert main(args) == 0
    out = capsys.readouterr().out
    tokens = load_config(config_path, {}).hooks.tokens
    assert list(tokens) == ["default"] and len(tokens["default"]) == 48
    assert tokens["default"] in out  # shown once, so it can be given to Claude Code
    assert main(args) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert load_config(config_path, {}).hooks.tokens == tokens
