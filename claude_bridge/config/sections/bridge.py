"""The ``bridge`` section: who may do what, the Matrix names, and the mirror, control,
attachments and retention subsections."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from claude_bridge.config.sections.attachments import AttachmentsConfig
from claude_bridge.config.sections.base import Section
from claude_bridge.config.sections.control import ControlConfig
from claude_bridge.config.sections.mirror import MirrorConfig


class PermissionLevel(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


class BridgeConfig(Section):
    permissions: dict[str, PermissionLevel] = Field(
        default_factory=lambda: {"@admin:localhost": PermissionLevel.ADMIN},
        description="Who may do what: a user id, a domain or '*' → viewer (reads), operator "
        "(talks to Claude, approves tools, commands) or admin (also bridge-wide commands). "
        "Operators and admins are invited to every new thread room.",
    )
    launch: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Who besides admins may start, resume and end sessions on host runners "
        "(`new`, `resume`, `end`): a user id, a domain or '*' (a user id beats a domain beats "
        "'*', as in permissions) → the runner project names they may launch in, or ['*'] for "
        "all. Only for people who are at least operator in permissions.",
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
    attachments: AttachmentsConfig = Field(
        default_factory=AttachmentsConfig,
        description="Files and images operators send to Claude from Matrix.",
    )
    retention: int | None = Field(
        None,
        ge=0,
        description="Days to keep delivered hook-event payloads and processed Matrix events; "
        "older ones are pruned hourly (thread mappings and Matrix event ids are kept). "
        "0 or null keeps everything.",
    )
