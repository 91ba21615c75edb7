"""``render_event``: one hook event → the Matrix messages mirroring it.

The pipeline is fixed so no renderer can skip a step: resolve options, scrub the event and the
context, dispatch to the event's renderer, drop timeline messages of switched-off events (room
state stays), finalize every message (scrub again, bound the size).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from claude_bridge.hooks import models as m
from claude_bridge.render import conversation, lifecycle, tool_events
from claude_bridge.render.content import Env
from claude_bridge.render.finalize import finalize
from claude_bridge.render.messages import OutboundMessage, RenderContext
from claude_bridge.render.notices import MINOR_EVENTS, render_minor, render_unknown
from claude_bridge.render.options import mirror_options
from claude_bridge.render.scrub import Scrubber, scrubber_for

Renderer = Callable[[Any, Env], list[OutboundMessage]]

RENDERERS: dict[str, tuple[type[m.HookEvent], Renderer]] = {
    "SessionStart": (m.SessionStart, lifecycle.render_session_start),
    "SessionEnd": (m.SessionEnd, lifecycle.render_session_end),
    "UserPromptSubmit": (m.UserPromptSubmit, conversation.render_user_prompt_submit),
    "PreToolUse": (m.PreToolUse, tool_events.render_pre_tool_use),
    "PostToolUse": (m.PostToolUse, tool_events.render_post_tool_use),
    "PostToolUseFailure": (m.PostToolUseFailure, tool_events.render_post_tool_use_failure),
    "PermissionRequest": (m.PermissionRequest, tool_events.render_permission_request),
    "PermissionDenied": (m.HookEvent, tool_events.render_permission_denied),
    "PostToolBatch": (m.PostToolBatch, tool_events.render_post_tool_batch),
    "Notification": (m.Notification, lifecycle.render_notification),
    "Stop": (m.Stop, conversation.render_stop),
    "StopFailure": (m.StopFailure, lifecycle.render_stop_failure),
    "SubagentStart": (m.SubagentStart, conversation.render_subagent_start),
    "SubagentStop": (m.SubagentStop, conversation.render_subagent_stop),
    "PreCompact": (m.PreCompact, lifecycle.render_pre_compact),
    "PostCompact": (m.PostCompact, lifecycle.render_post_compact),
    "MessageDisplay": (m.MessageDisplay, conversation.render_message_display),
    **{name: (m.HookEvent, render_minor) for name in MINOR_EVENTS},
}


def render_event(event: m.HookEvent, ctx: RenderContext) -> list[OutboundMessage]:
    """The messages mirroring ``event`` into its thread's room, in sending order.

    Pure and total: any event that parsed (known, unknown or oddly shaped) renders to valid
    content below the size limit. An invalid ``ctx.mirror`` raises ``pydantic.ValidationError``;
    config is validated at startup, so that is a programming error, not an input error.
    """
    opts = mirror_options(ctx.mirror)
    scrub = scrubber_for(opts.redact)
    env = Env(ctx=_scrub_context(ctx, scrub), opts=opts, scrub=scrub)
    name = event.hook_event_name
    scrubbed = _scrub_event(event, scrub)
    entry = RENDERERS.get(name)
    typed = _as_model(scrubbed, entry[0]) if entry else None
    if entry is None or typed is None:
        messages = render_unknown(scrubbed, env)
        known = entry is not None
    else:
        messages = entry[1](typed, env)
        known = True
    if not opts.enabled(name, known=known):
        messages = [msg for msg in messages if msg.state_key is not None]
    return [finalize(msg, env) for msg in messages]


def _scrub_event(event: m.HookEvent, scrub: Scrubber) -> m.HookEvent:
    # Every field, declared or extra, is scrubbed and cleaned before a renderer sees it.
    data = scrub.value(event.model_dump())
    return type(event).model_construct(**data)


def _as_model(event: m.HookEvent, model: type[m.HookEvent]) -> m.HookEvent | None:
    """``event`` as ``model`` (it is one if parse_hook_event made it); None if it can't be."""
    if isinstance(event, model):
        return event
    try:
        return model.model_validate(event.model_dump())
    except ValidationError:
        return None


def _scrub_context(ctx: RenderContext, scrub: Scrubber) -> RenderContext:
    """The context with its text scrubbed, and fields delivery passed in ``extra`` moved to their
    own fields (the field wins when both are set)."""

    def pick(name: str) -> str | None:
        value = getattr(ctx, name)
        if value is None:
            value = ctx.extra.get(name)
        return value if isinstance(value, str) else None

    def s(value: str | None) -> str | None:
        return scrub.text(value) if value is not None else None

    return dataclasses.replace(
        ctx,
        project=scrub.text(ctx.project),
        title=s(pick("title")),
        stream_text=s(pick("stream_text")),
        stream_anchor=pick("stream_anchor"),
    )
