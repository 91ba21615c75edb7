"""Reading, validating and writing the YAML config file, with ``CLAUDE_BRIDGE__…`` overrides
from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML, YAMLError

from claude_bridge.config.root import Config


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and what to do."""


def _format_validation(error: ValidationError) -> str:
    lines = []
    for err in error.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "config") -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source} is invalid:\n{_format_validation(e)}") from None


def _yaml() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


ENV_PREFIX = "CLAUDE_BRIDGE__"
"""``CLAUDE_BRIDGE__SECTION__KEY=value`` overrides ``section.key`` of the YAML (mautrix-style)."""


def env_overrides(environ: Mapping[str, str]) -> dict[tuple[str, ...], Any]:
    """Dotted config keys → values from the environment.

    Values stay strings (pydantic turns "29340" into an int where the model wants one); a value
    starting with ``{`` or ``[`` is read as YAML/JSON, for mappings such as ``bridge.permissions``
    whose keys cannot be spelled in a variable name.
    """
    found: dict[tuple[str, ...], Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or len(name) == len(ENV_PREFIX):
            continue
        keys = tuple(k.lower() for k in name.removeprefix(ENV_PREFIX).split("__"))
        if not all(keys):
            raise ConfigError(f"{name}: empty key segment (use one '__' between keys)")
        value: Any = raw
        if raw.lstrip().startswith(("{", "[")):
            try:
                value = YAML(typ="safe").load(raw)
            except YAMLError as e:
                raise ConfigError(f"{name}: not valid YAML/JSON: {e}") from None
        found[keys] = value
    return found


def apply_overrides(data: dict[str, Any], overrides: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    for keys, value in sorted(overrides.items()):
        node = data
        for key in keys[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        node[keys[-1]] = value
    return data


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read the YAML file, apply ``CLAUDE_BRIDGE__…`` overrides from ``environ``, validate."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file. Create one with 'claude-bridge example-config -o {path}'."
        ) from None
    try:
        data = YAML(typ="safe").load(text)
    except YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    source = str(path)
    overrides = env_overrides(os.environ if environ is None else environ)
    if overrides and isinstance(data or {}, dict):
        data = apply_overrides(data or {}, overrides)
        source += f" with {', '.join('.'.join(k) for k in sorted(overrides))} from the environment"
    return parse_config(data, source)


def update_config_file(path: Path, updates: dict[tuple[str, ...], Any]) -> None:
    """Set dotted keys in the YAML file, keeping its comments and layout, mode 0600."""
    yaml = _yaml()
    doc = yaml.load(path.read_text()) or {}
    for keys, value in updates.items():
        node = doc
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    write_private(path, lambda f: yaml.dump(doc, f))


def write_private(path: Path, write: Any) -> None:
    """Write a file that holds secrets: created 0600, replaced atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        write(f)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
