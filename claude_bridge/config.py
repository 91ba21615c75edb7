"""The bridge's YAML configuration: pydantic models, loading, validation and saving.

Every field has a description; ``config.example.yaml`` is generated from them
(``claude-bridge example-config``) and a test fails when the checked-in file drifts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML, YAMLError

from claude_bridge.catchup import CatchupConfig
from claude_bridge.control.options import ControlConfig
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
    request_timeout: float = Field(
        30.0,
        gt=0,
        le=600,
        description="Seconds one homeserver request may take before it is abandoned and retried "
        "(same transaction id, so a send that did arrive is not doubled).",
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


class TokenRole(StrEnum):
    HOST = "host"
    SHARED = "shared"
    ADMIN = "admin"


class HookToken(Section):
    """One hook token's settings; a plain string in ``hooks.tokens`` is a host token with the
    defaults below."""

    secret: str = Field(
        min_length=1,
        description="What the host sends as 'Authorization: Bearer <secret>'.",
    )
    role: TokenRole = Field(
        TokenRole.HOST,
        description="host: only its own sessions, on every path (hooks, answers, waiter, threads "
        "API, MCP). shared: also reads every thread and hands off into any thread through the "
        "threads API / MCP. admin: shared, and may also post hook events into other tokens' "
        "sessions (their answers still go to the owning token only).",
    )
    local: bool = Field(
        False,
        description="The host using this token is the bridge's own machine: only such a token's "
        "hooks may make the bridge read a session transcript from its disk (catch-up).",
    )
    max_threads: int = Field(
        0,
        ge=0,
        description="Most threads this token may own in total; a new session beyond it is "
        "answered 403. 0: no limit.",
    )
    max_held_approvals: int = Field(
        20,
        ge=0,
        description="Most permission requests of this token held open at once waiting for an "
        "operator; more are answered 429 (the shim spools them). 0: no limit.",
    )
    renamed_from: list[str] = Field(
        default_factory=list,
        description="Former names of this token. At start-up the threads those names own are "
        "given to this name, with their queued messages; a thread whose owner is no configured "
        "token is logged (and refused on every path) until its owner is named here.",
    )


class HooksConfig(Section):
    listen: str = Field(
        "127.0.0.1:29341",
        description="host:port of the hook-ingest server (Claude Code → bridge). Separate from the "
        "appservice listener so each can be exposed to different networks.",
    )
    tokens: dict[str, str | HookToken] = Field(
        default_factory=dict,
        description="Hook tokens, name → secret, or name → {secret, role, local, max_threads, "
        "max_held_approvals, renamed_from} (below). Give each Claude Code host its own; "
        "they send it as 'Authorization: Bearer <secret>'. A thread belongs to the token that "
        "opened it (by name).",
    )
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest hook request body accepted (larger → 413)."
    )
    new_threads_per_minute: int = Field(
        60,
        ge=0,
        description="New sessions (threads) one hook token may open per minute; more are answered "
        "429 with Retry-After (the shim spools them). Events of existing threads are not "
        "limited. 0: no limit.",
    )
    catchup: CatchupConfig = Field(
        default_factory=CatchupConfig,
        description="Filling a room from the session transcript after events were lost.",
    )
    group_commit: bool = Field(
        True,
        description="On Postgres, hook events that arrive together are stored in one commit (each "
        "is still acknowledged only after it is committed). Off: one commit per event. No "
        "effect on SQLite.",
    )

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be host:port, e.g. 127.0.0.1:29341")
        return v

    @model_validator(mode="after")
    def _tokens_unambiguous(self) -> HooksConfig:
        tokens = self.hook_tokens()
        seen: dict[str, str] = {}
        for name, token in tokens.items():
            if token.secret in seen:
                raise ValueError(f"tokens {seen[token.secret]!r} and {name!r} have one secret")
            seen[token.secret] = name
        former: dict[str, str] = {}
        for name, token in tokens.items():
            for old in token.renamed_from:
                if old in tokens:
                    raise ValueError(f"{name}.renamed_from: {old!r} is a configured token")
                if old in former:
                    raise ValueError(f"{old!r} is in renamed_from of {former[old]!r} and {name!r}")
                former[old] = name
        return self

    def hook_tokens(self) -> dict[str, HookToken]:
        """Every token with its settings (a plain secret gets the defaults)."""
        return {
            name: HookToken(secret=value) if isinstance(value, str) else value
            for name, value in self.tokens.items()
        }

    def secrets(self) -> dict[str, str]:
        """Token name → secret."""
        return {name: token.secret for name, token in self.hook_tokens().items()}

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
    control: ControlConfig = Field(
        default_factory=ControlConfig,
        description="Steering sessions from Matrix: messages to Claude, approvals, commands.",
    )
    retention: int | None = Field(
        None,
        ge=0,
        description="Days to keep delivered hook-event payloads and processed Matrix events; "
        "older ones are pruned hourly (thread mappings and Matrix event ids are kept). "
        "0 or null keeps everything.",
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
