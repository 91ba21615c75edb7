"""Config loading, error messages, the generated example, and the registration."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from claude_bridge.cli import main
from claude_bridge.config import Config, ConfigError, PermissionLevel, load_config
from claude_bridge.config.example import render_example
from claude_bridge.ids import thread_id_for
from claude_bridge.permissions import Permissions

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_example_matches_the_models() -> None:
    assert (ROOT / "config.example.yaml").read_text() == render_example(), (
        "config.example.yaml drifted: run 'claude-bridge example-config -o config.example.yaml'"
    )


def test_example_documents_every_key_and_loads_to_the_defaults(tmp_path: Path) -> None:
    text = render_example()
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert load_config(path) == Config()

    def walk(model: type, prefix: str = "") -> list[str]:
        keys = []
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            assert field.description, f"{prefix}{name} has no description"
            keys.append(prefix + name)
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                keys += walk(ann, f"{prefix}{name}.")
        return keys

    for key in walk(Config):
        assert f"{key.rsplit('.', 1)[-1]}:" in text, key


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("hooks:\n  listen: nope\n", "hooks.listen"),
        ("homeserver:\n  address: ftp://x\n", "homeserver.address"),
        ("bridge:\n  permissions:\n    '@a:b': superuser\n", "bridge.permissions.@a:b"),
        ("appservice:\n  port: 99999\n", "appservice.port"),
        ("database: mysql://x\n", "database"),
        ("homeserver:\n  adress: http://x\n", "homeserver.adress: unknown key"),
        ("- a list\n", "top level must be a mapping"),
        ("homeserver: [\n", "not valid YAML"),
    ],
)
def test_config_errors_name_the_dotted_key(tmp_path: Path, yaml: str, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value)


def test_missing_config_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="example-config"):
        load_config(tmp_path / "nope.yaml")


def test_generate_registration_writes_tokens_and_namespaces(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(render_example())
    out = tmp_path / "registration" / "claude-registration.yaml"
    assert main(["generate-registration", "-c", str(config), "-o", str(out)]) == 0
    reg = YAML(typ="safe").load(out.read_text())
    loaded = load_config(config)
    assert reg["as_token"] == loaded.appservice.as_token != "generate"
    assert reg["hs_token"] == loaded.appservice.hs_token != reg["as_token"]
    assert reg["sender_localpart"] == "claudebot" and reg["rate_limited"] is False
    users = [ns["regex"] for ns in reg["namespaces"]["users"]]
    assert r"@claude\-.*:localhost" in users
    assert reg["namespaces"]["aliases"] == [
        {"regex": r"#claude\-thread\-.*:localhost", "exclusive": True}
    ]
    for path in (out, config):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "# Client-server API URL" in config.read_text()  # comments kept
    # Fresh tokens every time.
    assert main(["generate-registration", "-c", str(config), "-o", str(out)]) == 0
    assert YAML(typ="safe").load(out.read_text())["as_token"] != reg["as_token"]


def test_permissions_resolve_user_then_domain_then_wildcard() -> None:
    perms = Permissions(
        {
            "@boss:example.org": PermissionLevel.ADMIN,
            "example.org": PermissionLevel.OPERATOR,
            "*": PermissionLevel.VIEWER,
        }
    )
    assert perms.level("@boss:example.org") == PermissionLevel.ADMIN
    assert perms.level("@dev:example.org") == PermissionLevel.OPERATOR
    assert perms.level("@eve:elsewhere.net") == PermissionLevel.VIEWER
    assert Permissions({}).level("@eve:elsewhere.net") is None
    assert perms.at_least("@dev:example.org", PermissionLevel.OPERATOR)
    assert not perms.at_least("@eve:elsewhere.net", PermissionLevel.OPERATOR)
    assert perms.invitees() == ["@boss:example.org"]


@pytest.mark.parametrize(
    ("session", "thread"),
    [
        ("3eb5f21d-5dcb-43a8-9ab8-939331f73b6b", "3eb5f21d-5dcb-43a8-9ab8-939331f73b6b"),
        ("ABC", "abc"),
        ("a b/c=d", "a=20b=2fc=3dd"),
        ("ü", "=c3=bc"),
    ],
)
def test_thread_ids_are_valid_localparts(session: str, thread: str) -> None:
    assert thread_id_for(session) == thread
