"""The bridge's YAML configuration: pydantic models, loading, validation and saving.

Every field has a description; ``config.example.yaml`` is generated from them
(``claude-bridge example-config``) and a test fails when the checked-in file drifts.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from ruamel.yaml import YAML, YAMLError

from claude_bridge.render.options import MirrorConfig

GENERATE = "generate"
"""Placeholder for a token that ``generate-registration`` fills in."""


class PermissionLevel(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class HomeserverConfig(Section):
    address: str = Field(
        "http://127.0.0.1:8008",
        description="Client-server API URL of the homeserver, as the bridge reaches it.",
    )
    domain: str = Field(
        "localhost", description="The homeserver's server name (the part after ':' in user ids)."
    )

    @field_validator("address")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")


class AppserviceConfig(Section):
    hostname: str = Field(
        "127.0.0.1", description="Address the appservice listener (Synapse → bridge) binds to."
    )
    port: int = Field(29340, ge=1, le=65535, description="Port of the appservice listener.")
    address: str = Field(
        "http://127.0.0.1:29340",
        description="URL at which the homeserver reaches the appservice listener.",
    )
    id: str = Field("claude", description="Appservice id in the registration.")
    bot_username: str = Field(
        "claudebot",
        description="Localpart of the bridge bot (the registration's sender_localpart).",
    )
    as_token: str = Field(
        GENERATE,
        description="Token the bridge uses towards the homeserver (set by generate-registration).",
    )
    hs_token: str = Field(
        GENERATE,
        description="Token the homeserver uses towards the bridge (set by generate-registration).",
    )


class HooksConfig(Section):
    listen: str = Field(
        "127.0.0.1:29341",
        description="host:port of the hook-ingest server (Claude Code → bridge). Separate from the "
        "appservice listener so each can be exposed to different networks.",
    )
    tokens: dict[str, str] = Field(
        default_factory=dict,
        description="Hook tokens, name → secret. Give each Claude Code host its own; they send it "
        "as 'Authorization: Bearer <secret>'.",
    )
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest hook request body accepted (larger → 413)."
    )

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be host:port, e.g. 127.0.0.1:29341")
        return v

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class BridgeConfig(Section):
    permissions: dict[str, PermissionLevel] = Field(
        default_factory=lambda: {"@admin:localhost": PermissionLevel.ADMIN},
        description="Who may do what: a user id, a domain or '*' → viewer (reads), operator "
        "(talks to Claude, approves tools, commands) or admin (also bridge-wide commands). "
        "Operators and admins are invited to every new thread room.",
    )
    ghost_prefix: str = Field("claude-", description="Localpart prefix of the session ghosts.")
    alias_prefix: str = Field("claude-thread-", description="Localpart prefix of thread aliases.")
    mirror: MirrorConfig = Field(
        default_factory=MirrorConfig, description="What is mirrored into the rooms, and how."
    )


class LoggingConfig(Section):
    level: str = Field("INFO", description="Log level: DEBUG, INFO, WARNING or ERROR.")
    format: str = Field(
        "auto", description="'json' (one object per line), 'console', or 'auto' (console on a TTY)."
    )


class Config(Section):
    homeserver: HomeserverConfig = Field(
        default_factory=HomeserverConfig, description="The homeserver."
    )
    appservice: AppserviceConfig = Field(
        default_factory=AppserviceConfig, description="The appservice side (Synapse ↔ bridge)."
    )
    database: str = Field(
        "sqlite:claude-bridge.db",
        description="postgres://user:pass@host/db, or sqlite:PATH (relative to the config file).",
    )
    hooks: HooksConfig = Field(default_factory=HooksConfig, description="Claude Code hook ingest.")
    bridge: BridgeConfig = Field(default_factory=BridgeConfig, description="Bridge behaviour.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logging.")

    @field_validator("database")
    @classmethod
    def _db_url(cls, v: str) -> str:
        if not v.startswith(("postgres://", "postgresql://", "sqlite:")):
            raise ValueError("must start with postgres://, postgresql:// or sqlite:")
        return v

    def database_url(self, base_dir: Path) -> str:
        """The database URL with a relative SQLite path resolved against ``base_dir``."""
        if not self.database.startswith("sqlite:"):
            return self.database
        path = Path(self.database.removeprefix("sqlite:").removeprefix("//"))
        return f"sqlite:{(base_dir / path).resolve()}"


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


def load_config(path: Path) -> Config:
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
    return parse_config(data, str(path))


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
