"""The visible "caught up after an outage" notice before recovered events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from claude_bridge.events.models import HookEvent
from claude_bridge.render.messages import OutboundMessage, RenderContext

CATCHUP_EVENT = "org.claude_bridge.catchup"
"""The marker's hook event name: the bridge's own, never one Claude Code sends."""

Renderer = Callable[[HookEvent, RenderContext], list[OutboundMessage]]


def with_catchup_marker(render: Renderer) -> Renderer:
    """``render`` that also renders the catch-up marker (a bridge event, not a Claude Code one)."""

    def render_event(event: HookEvent, ctx: RenderContext) -> list[OutboundMessage]:
        if event.hook_event_name != CATCHUP_EVENT:
            return render(event, ctx)
        return [OutboundMessage(content=marker_content(event.extra))]

    return render_event


def marker_content(extra: dict[str, Any]) -> dict[str, Any]:
    recovered, omitted = extra.get("recovered"), extra.get("omitted")
    n = recovered if isinstance(recovered, int) else 0
    span = ""
    first, last = extra.get("first_ms"), extra.get("last_ms")
    if isinstance(first, int) and isinstance(last, int):
        span = f" from {_clock(first)} to {_clock(last)} UTC"
    more = f" ({omitted} older ones not shown)" if isinstance(omitted, int) and omitted else ""
    lead = "⏪ Caught up after an outage"
    rest = (
        f": the bridge missed {n} item{'s' if n != 1 else ''}{span}; they follow, "
        f"recovered from the session transcript{more}."
    )
    return {
        "msgtype": "m.notice",
        "body": lead + rest,
        "format": "org.matrix.custom.html",
        "formatted_body": f"<b>{lead}</b>{rest}",
        "m.mentions": {},
    }


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S")
