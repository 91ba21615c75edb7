"""Where the session stands, told to its room when that changes: its topic and the
``org.claude_bridge.thread`` state event (``room_state`` says what they hold).

Delivery tells the renderer what the room shows now (``ctx.extra["activity"]``, from the thread
row, which follows the sent state event; absent or None: not known, so it is said). The two state
events go after the event's own messages, the thread state last: the row changes only once that
is sent, so a retry after a partial send renders the same parts again.
"""

from __future__ import annotations

from collections.abc import Callable

from claude_bridge.config.sections.mirror import mirror_options
from claude_bridge.events.models import HookEvent
from claude_bridge.render.messages import OutboundMessage, RenderContext
from claude_bridge.render.scrub import scrubber_for
from claude_bridge.render.text import one_line
from claude_bridge.room_state import (
    THREAD_STATE,
    activity_after,
    thread_state,
    topic_content,
    topic_text,
)

Renderer = Callable[[HookEvent, RenderContext], list[OutboundMessage]]


def with_room_status(render: Renderer) -> Renderer:
    """``render`` followed by the room's status change, if the event makes one."""

    def render_with_status(event: HookEvent, ctx: RenderContext) -> list[OutboundMessage]:
        return render(event, ctx) + room_status(event, ctx)

    return render_with_status


def room_status(event: HookEvent, ctx: RenderContext) -> list[OutboundMessage]:
    """The topic and thread state for where ``event`` leaves the session; [] if unchanged."""
    current = ctx.extra.get("activity")
    new = activity_after(event, current if isinstance(current, str) else None)
    if new is None or new == current:
        return []
    scrub = scrubber_for(mirror_options(ctx.mirror).redact)
    session_id = str(ctx.extra.get("session_id") or event.session_id)
    raw_cwd = ctx.extra.get("cwd") or event.cwd
    cwd = scrub.text(one_line(raw_cwd, 200)) if isinstance(raw_cwd, str) and raw_cwd else None
    project = scrub.text(one_line(ctx.project, 100)) or None
    text = topic_text(new, project, session_id, cwd)
    state = thread_state(session_id=session_id, project=project, cwd=cwd, activity=new)
    return [
        OutboundMessage(content=topic_content(text), event_type="m.room.topic", state_key=""),
        OutboundMessage(content=state, event_type=THREAD_STATE, state_key=""),
    ]
