"""``claude-bridge setup``: make a config and a registration that agree, for deployments that
start from nothing (Docker Compose). Idempotent: run it before every start.

1. No config file: write the documented example with the ``CLAUDE_BRIDGE__…`` environment
   overrides filled in.
2. Appservice tokens still ``generate``: generate them. No hook token: generate one (printed once).
3. The registration missing or not matching the config: write it from the config.

An existing config is never rewritten except for those generated tokens.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from ruamel.yaml import YAML, YAMLError

from claude_bridge.config import (
    GENERATE,
    Config,
    env_overrides,
    load_config,
    update_config_file,
    write_private,
)
from claude_bridge.config.example import render_example
from claude_bridge.files import private_dir
from claude_bridge.registration import build_registration, new_token


def typed_value(config: Config, keys: tuple[str, ...]) -> Any:
    """The validated value at a dotted key, as YAML should hold it (ints as ints, enums as text)."""
    node: Any = config
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else getattr(node, key)
    if isinstance(node, BaseModel):
        return node.model_dump(mode="json")
    if isinstance(node, dict):
        return {
            k: v.model_dump(mode="json") if isinstance(v, BaseModel) else getattr(v, "value", v)
            for k, v in node.items()
        }
    return getattr(node, "value", node)


def _registration_matches(path: Path, want: dict[str, Any]) -> bool:
    try:
        return bool(YAML(typ="safe").load(path.read_text()) == want)
    except (OSError, YAMLError):
        return False


def provision(
    config_path: Path, registration_path: Path, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Bring both files into shape; returns what was done (empty: nothing to do)."""
    environ = os.environ if environ is None else environ
    done: list[str] = []
    if not config_path.exists():
        private_dir(config_path.parent)
        write_private(config_path, lambda f: f.write(render_example()))
        overrides = env_overrides(environ)
        config = load_config(config_path, environ)  # validates the overrides before writing them
        if overrides:
            update_config_file(config_path, {k: typed_value(config, k) for k in overrides})
        done.append(
            f"wrote {config_path} from the example with {len(overrides)} value(s) from "
            "the environment"
        )
    config = load_config(config_path, environ)
    updates: dict[tuple[str, ...], Any] = {}
    if GENERATE in (config.appservice.as_token, config.appservice.hs_token):
        updates[("appservice", "as_token")] = config.appservice.as_token = new_token()
        updates[("appservice", "hs_token")] = config.appservice.hs_token = new_token()
        done.append("generated appservice.as_token and hs_token")
    if not config.hooks.tokens:
        secret = secrets.token_hex(24)
        updates[("hooks", "tokens")] = {"default": secret}
        config.hooks.tokens = {"default": secret}
        done.append(
            f"generated hook token 'default' (give it to Claude Code as "
            f"CLAUDE_BRIDGE_TOKEN): {secret}"
        )
    if updates:
        update_config_file(config_path, updates)
    want = build_registration(config)
    if not _registration_matches(registration_path, want):
        private_dir(registration_path.parent)
        yaml = YAML()
        write_private(registration_path, lambda f: yaml.dump(want, f))
        done.append(f"wrote {registration_path} (restart Synapse if it was running)")
    return done
