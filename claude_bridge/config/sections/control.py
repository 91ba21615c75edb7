"""The ``bridge.control`` config section: how people in a room steer a session.

Every field has a ``description`` because the example config is generated from them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

HandoffMode = Literal["approve", "direct_same_token"]


class ControlConfig(BaseModel):
    """Messages to Claude, tool-call approvals and commands from Matrix."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command_prefix: str = Field(
        default="!claude",
        min_length=1,
        max_length=32,
        description="Messages starting with this in a thread room are commands "
        "('!claude help'); in a direct chat with the bridge bot the prefix is optional.",
    )
    approval_timeout: float = Field(
        default=300.0,
        gt=0,
        le=3600,
        description="Seconds a PermissionRequest waits for a decision in Matrix before Claude "
        "Code falls back to its own dialog. Keep it below the hook's timeout (install-hooks "
        "sets 600).",
    )
    max_hold: float = Field(
        default=540.0,
        gt=0,
        le=3600,
        description="Longest a Stop hook is held open in listen mode before Claude may stop "
        "(the background waiter takes over then). Keep it below the Stop hook's timeout "
        "(install-hooks sets 600).",
    )
    listen_minutes: int = Field(
        default=30,
        ge=1,
        le=24 * 60,
        description="How long '!claude listen' keeps a session listening when no duration is "
        "given (minutes).",
    )
    max_wait: float = Field(
        default=600.0,
        ge=1,
        le=3600,
        description="Longest one long-poll of the background waiter "
        "(GET /claude/v1/sessions/<id>/wait) is held; the waiter polls again after it.",
    )
    stop_block_limit: int = Field(
        default=7,
        ge=1,
        le=100,
        description="At most this many consecutive Stop blocks carry messages. Claude Code "
        "ignores blocks past its cap (8, CLAUDE_CODE_STOP_HOOK_BLOCK_CAP), and a message on an "
        "ignored block would be lost; one below the cap leaves room for another Stop hook.",
    )
    message_budget: int = Field(
        default=9000,
        ge=500,
        le=10_000,
        description="Characters of messages one hook answer carries (Claude Code caps "
        "additionalContext at 10000); the rest waits for the next answer.",
    )
    idle_after: float = Field(
        default=20.0,
        ge=0,
        le=3600,
        description="Seconds without hook events after which the background waiter delivers "
        "messages even though the session looked busy (e.g. interrupted in the terminal, which "
        "fires no Stop). While a session is busy, messages go with its next hook answer.",
    )
    handoffs: HandoffMode = Field(
        default="approve",
        description="A message one session's Claude sends another (threads API POST "
        ".../messages, MCP claude_send_to_thread) is a hand-off, written by no person. "
        "'approve': it is posted in the target room as a proposal and reaches that session's "
        "Claude only after an operator there reacts ✅ (❌ drops it). 'direct_same_token': "
        "between two sessions of the same hook token it goes straight through; other "
        "hand-offs still wait for ✅.",
    )
    handoff_max_waiting: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="At most this many hand-offs wait for an operator's decision in one thread "
        "(counted when a hand-off is posted, whichever session sends it); another is refused "
        "to the sending Claude with 429 until one is decided or expires. Each waiting one "
        "pinged the operators.",
    )
    handoffs_per_minute: int = Field(
        default=10,
        ge=0,
        le=10_000,
        description="Hand-offs the sessions of one hook token may post per minute, all "
        "together, into any thread (direct ones included); more are refused with 429 and "
        "Retry-After. 0: no limit.",
    )
    handoff_expiry: float = Field(
        default=86_400.0,
        gt=0,
        le=30 * 86_400,
        description="Seconds a hand-off waits for an operator's decision; then it is withdrawn "
        "(this session's Claude never gets it) and the room is told.",
    )
