"""Pydantic models of Claude Code hook inputs (which event uses which: ``events/catalogue.py``).

Claude Code adds events and fields between versions, so every model keeps unknown fields and an
unknown ``hook_event_name`` parses as the plain :class:`HookEvent`. Only the fields the bridge
relies on are declared, and they are validated: a wrong type is a client error, not a crash later.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from claude_bridge.ids import MAX_SESSION_ID_LENGTH


class HookEvent(BaseModel):
    """Fields every hook input carries."""

    model_config = ConfigDict(extra="allow", frozen=True)

    session_id: str = Field(min_length=1, max_length=MAX_SESSION_ID_LENGTH)
    hook_event_name: str = Field(min_length=1, max_length=128)
    transcript_path: str | None = None
    cwd: str | None = None
    prompt_id: str | None = None
    permission_mode: str | None = None

    @property
    def extra(self) -> dict[str, Any]:
        return self.model_extra or {}


class SessionStart(HookEvent):
    source: str | None = None  # startup | resume | clear | compact
    model: str | None = None


class UserPromptSubmit(HookEvent):
    prompt: str = ""


class ToolEvent(HookEvent):
    tool_name: str = ""
    tool_input: dict[str, Any] = Field(default_factory=dict)
    tool_use_id: str | None = None


class PreToolUse(ToolEvent):
    pass


class PostToolUse(ToolEvent):
    tool_response: Any = None
    duration_ms: int | None = None


class PostToolUseFailure(ToolEvent):
    error: Any = None
    is_interrupt: bool | None = None


class PermissionRequest(ToolEvent):
    permission_suggestions: list[dict[str, Any]] = Field(default_factory=list)


class PostToolBatch(HookEvent):
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)


class Notification(HookEvent):
    message: str = ""
    title: str | None = None
    notification_type: str | None = None


class Stop(HookEvent):
    stop_hook_active: bool = False
    last_assistant_message: str | None = None


class StopFailure(HookEvent):
    error: Any = None
    error_details: Any = None
    last_assistant_message: str | None = None


class SubagentStart(HookEvent):
    agent_id: str = ""
    agent_type: str | None = None


class SubagentStop(Stop):
    agent_id: str = ""
    agent_type: str | None = None
    agent_transcript_path: str | None = None


class PreCompact(HookEvent):
    trigger: str | None = None
    custom_instructions: str | None = None


class PostCompact(HookEvent):
    trigger: str | None = None
    compact_summary: str | None = None


class SessionEnd(HookEvent):
    reason: str | None = None


class MessageDisplay(HookEvent):
    message_id: str | None = None
    turn_id: str | None = None
    index: int = 0
    final: bool = False
    delta: str = ""
