"""Hook event → Matrix content. Pure functions: no I/O, no storage, no clock."""

from __future__ import annotations

from claude_bridge.config.sections.mirror import MirrorConfig, RedactConfig
from claude_bridge.render.events import render_event
from claude_bridge.render.messages import Attachment, OutboundMessage, RenderContext

__all__ = [
    "Attachment",
    "MirrorConfig",
    "OutboundMessage",
    "RedactConfig",
    "RenderContext",
    "render_event",
]
