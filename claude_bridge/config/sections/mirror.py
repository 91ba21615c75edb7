"""The ``bridge.mirror`` config section: what the renderer mirrors and how much of it.

Every field has a ``description`` because the example config is generated from them.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from claude_bridge.events.catalogue import CATALOGUE

_OFF_BY_DEFAULT = [k.name for k in CATALOGUE if not k.mirrored_by_default]
DEFAULT_DISABLED_EVENTS = frozenset(_OFF_BY_DEFAULT)


class RedactConfig(BaseModel):
    """Secret scrubbing applied to everything before it leaves for Matrix."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        default=True,
        description="Replace secrets (API keys, tokens, private keys, password assignments) "
        "with the replacement text in everything sent to Matrix (messages, room names, "
        "topics, display names, attachments) and in the threads API's answers. The bridge's "
        "own tokens are hidden even when this is off.",
    )
    use_defaults: bool = Field(
        default=True,
        description="Use the built-in patterns (Anthropic, OpenAI, GitHub, GitLab, Slack, AWS, "
        "Google, Stripe and other keys, bearer tokens, cookies, JWTs, private key blocks, "
        "password=/token=/api_key=/DB_PASS= assignments in any case, mysql -p…, curl -u "
        "user:pw and --password arguments, Slack/Discord webhook and signed URLs, credentials "
        "in URLs), also when split by zero-width characters or base64-encoded.",
    )
    patterns: list[str] = Field(
        default_factory=list,
        description="Extra regular expressions (Python syntax) to redact. A named group "
        "'secret' limits the replacement to that group; otherwise the whole match is replaced.",
    )
    replacement: str = Field(
        default="[redacted]",
        min_length=1,
        max_length=64,
        description="Text that replaces each secret.",
    )

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        # Fail at config load, not on the first event that reaches the scrubber.
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"invalid redact pattern {pattern!r}: {e}") from None
        return patterns


class MirrorConfig(BaseModel):
    """Which hook events are mirrored into the session's room, and how verbosely."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    events: dict[str, bool] = Field(
        default_factory=dict,
        description="Per hook event switch, e.g. {PreToolUse: false, MessageDisplay: false}. "
        f"Events not listed are mirrored, except {', '.join(_OFF_BY_DEFAULT[:-1])} and "
        f"{_OFF_BY_DEFAULT[-1]}, which are off unless set to true. Turning an event off hides "
        "its messages but keeps its room state updates (room name, topic, thread status).",
    )
    unknown_events: bool = Field(
        default=True,
        description="Show hook events this bridge version does not know as a one-line notice.",
    )
    tool_output: Literal["thread", "inline", "off"] = Field(
        default="thread",
        description="Where a tool call's output, diff or error goes: 'thread' replies under "
        "the tool call line, 'inline' posts it in the timeline, 'off' hides it (failed calls "
        "still get their line marked).",
    )
    max_inline_lines: int = Field(
        default=12,
        ge=1,
        le=10_000,
        description="Tool output and diffs show at most this many lines, with a '… "
        "(truncated, N more lines)' marker and the full text attached as a file. Kept short "
        "because many clients (nheko, older Element X) show thread replies in the timeline.",
    )
    inline_output_bytes: int = Field(
        default=16_384,
        ge=512,
        le=40_000,
        description="Tool output longer than this many UTF-8 bytes is cut like long output.",
    )
    attach_full_output: bool = Field(
        default=True,
        description="When output or a reply was cut, attach the full text as a file next to it.",
    )
    max_content_bytes: int = Field(
        default=49_152,
        ge=4_096,
        le=60_000,
        description="Upper bound for one event's content as JSON (Matrix allows 65536 bytes "
        "for the whole event). Edits get half, since they carry the text twice.",
    )
    show_diffs: bool = Field(
        default=True,
        description="Show Edit, MultiEdit, Write and NotebookEdit calls as unified diffs.",
    )
    diff_context_lines: int = Field(
        default=3, ge=0, le=20, description="Unchanged lines shown around each diff hunk."
    )
    mention_operators: bool = Field(
        default=True,
        description="Mention (notify) the thread's operators on Notification and StopFailure.",
    )
    room_name_length: int = Field(
        default=60,
        ge=10,
        le=255,
        description="Longest room name set from the first prompt and the project.",
    )
    tool_line_length: int = Field(
        default=160,
        ge=20,
        le=2_000,
        description="Longest summary of a tool call's input on its timeline line.",
    )
    coalesce_lines: int = Field(
        default=20,
        ge=1,
        le=100,
        description="When several one-line notices (tool calls) are already queued for a room "
        "(a burst, or catching up after an outage), send up to this many as one message, a "
        "line each. Nothing is held back to wait for more; 1 turns coalescing off.",
    )
    backlog_events: int = Field(
        default=200,
        ge=20,
        le=1_000_000,
        description="When more than this many events of one session wait to be sent to its "
        "room (a burst faster than the homeserver takes them, or a flood), the oldest tool "
        "calls, tool output and other detail among them are folded: stored, not sent, and one "
        "notice tells the room how many. The newest half of this many are still shown. "
        "Prompts, replies, approvals, notifications, errors and session start/end are always "
        "sent.",
    )
    redact: RedactConfig = Field(
        default_factory=RedactConfig, description="Secret scrubbing (see RedactConfig)."
    )

    def enabled(self, event_name: str, *, known: bool = True) -> bool:
        """Whether ``event_name``'s messages are mirrored."""
        if event_name in self.events:
            return self.events[event_name]
        if not known:
            return self.unknown_events
        return event_name not in DEFAULT_DISABLED_EVENTS


_DEFAULT = MirrorConfig()


def mirror_options(value: Any) -> MirrorConfig:
    """Accept what ``RenderContext.mirror`` may hold: ``None``, a mapping, or the model."""
    if value is None:
        return _DEFAULT
    if isinstance(value, MirrorConfig):
        return value
    return MirrorConfig.model_validate(value)
