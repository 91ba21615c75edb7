"""``render_event``: one hook event → the Matrix messages mirroring it.

The pipeline is fixed so no renderer can skip a step: resolve options, scrub the event and the
context, dispatch to the renderer registered for the event's kind (``render/registry.py``),
drop timeline messages of switched-off events (room state stays), finalize every message (scrub
again, bound the size).
"""

from __future__ import annotations

import dataclasses

from pydantic import ValidationError

from claude_bridge.config.sections.mirror import mirror_options
from claude_bridge.events.catalogue import POST_TOOL_USE, kind_of
from claude_bridge.events.models import HookEvent

# Imported for their @renders registrations.
from claude_bridge.render import (  # noqa: F401
    approval,
    compaction,
    conversation,
    lifecycle,
    notices,
    tool_events,
)
from claude_bridge.render.content import Env
from claude_bridge.render.finalize import finalize
from claude_bridge.render.images import restore_images
from claude_bridge.render.messages import OutboundMessage, RenderContext
from claude_bridge.render.notices import render_unknown
from claude_bridge.render.registry import RENDERERS
from claude_bridge.render.scrub import Scrubber, scrubber_for


def render_event(event: HookEvent, ctx: RenderContext) -> list[OutboundMessage]:
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
    renderer = RENDERERS.get(name)
    typed = _as_model(scrubbed, kind_of(name).model) if renderer else None
    if renderer is None or typed is None:
        messages = render_unknown(scrubbed, env)
        known = renderer is not None
    else:
        messages = renderer(typed, env)
        known = True
    if not opts.enabled(name, known=known):
        messages = [msg for msg in messages if msg.state_key is not None]
    return [finalize(msg, env) for msg in messages]


def _scrub_event(event: HookEvent, scrub: Scrubber) -> HookEvent:
    # Every field, declared or extra, is scrubbed and cleaned before a renderer sees it; but
    # the base64 of an image a tool returned is bytes, not text: it is put back as it was.
    raw = event.model_dump()
    data = scrub.value(raw)
    if event.hook_event_name == POST_TOOL_USE.name and "tool_response" in raw:
        data["tool_response"] = restore_images(raw["tool_response"], data["tool_response"])
    return type(event).model_construct(**data)


def _as_model(event: HookEvent, model: type[HookEvent]) -> HookEvent | None:
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
