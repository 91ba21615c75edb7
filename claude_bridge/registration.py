"""The Synapse appservice registration, generated from the config."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from claude_bridge.config import Config, load_config, update_config_file, write_private
from claude_bridge.files import private_dir


def new_token() -> str:
    return secrets.token_urlsafe(48)


def build_registration(config: Config) -> dict[str, Any]:
    return {
        "id": config.appservice.id,
        "url": config.appservice.address,
        "as_token": config.appservice.as_token,
        "hs_token": config.appservice.hs_token,
        "sender_localpart": config.appservice.bot_username,
        "rate_limited": False,
        "namespaces": config.matrix_names().namespaces(),
        "de.sorunome.msc2409.push_ephemeral": False,
        "receive_ephemeral": False,
    }


def generate_registration(config_path: Path, output: Path) -> dict[str, Any]:
    """Fresh tokens into the config file, then the registration written 0600 to ``output``."""
    config = load_config(config_path)
    as_token, hs_token = new_token(), new_token()
    update_config_file(
        config_path, {("appservice", "as_token"): as_token, ("appservice", "hs_token"): hs_token}
    )
    config.appservice.as_token = as_token
    config.appservice.hs_token = hs_token
    registration = build_registration(config)
    private_dir(output.parent)
    yaml = YAML()
    write_private(output, lambda f: yaml.dump(registration, f))
    return registration
