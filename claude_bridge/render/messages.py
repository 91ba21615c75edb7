"""What the renderer hands to delivery: Matrix messages plus symbolic references between them.

The renderer is pure, so it cannot know Matrix event ids. Instead a message may name itself with an
``anchor`` and refer to earlier anchors of the same thread (``thread_root``, ``replaces``); delivery
resolves anchors to event ids it stored when it sent them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TEXT_MIMETYPES = ("text/", "application/json", "application/x-ndjson", "application/xml")
"""Uploads of these types are text, and scrubbed; anything else (images) is sent as it is."""


@dataclass(frozen=True)
class Attachment:
    """A file to upload to the media repository before sending; its mxc URI goes to ``url``."""

    data: bytes
    filename: str
    mimetype: str = "text/plain"
    thumbnail: bool = False
    """The upload is also its own thumbnail: delivery fills in ``info.thumbnail_url`` too."""


@dataclass(frozen=True)
class OutboundMessage:
    content: dict[str, Any]
    event_type: str = "m.room.message"
    state_key: str | None = None
    """Set for a state event (``event_type`` is then e.g. ``m.room.topic``)."""
    sender: str | None = None
    """``None``: the thread's ghost. Otherwise a suffix naming another ghost of this thread, e.g.
    ``agent-a79136`` → ``@claude-<thread>-agent-a79136``."""
    sender_displayname: str | None = None
    anchor: str | None = None
    """Remember the sent event id under this name (e.g. ``tool:<tool_use_id>``)."""
    thread_root: str | None = None
    """Send inside the ``m.thread`` rooted at this anchor (falls back to the timeline if
    unknown)."""
    replaces: str | None = None
    """Edit (``m.replace``) the event remembered under this anchor (sent as new if unknown)."""
    attachment: Attachment | None = None


PROMPT_BY = "prompt_by"
"""``RenderContext.extra`` key: who wrote a UserPromptSubmit's prompt, when the bridge typed it
into a runner session for them (a Matrix user id)."""


@dataclass(frozen=True)
class RenderContext:
    """Everything about the thread the renderer may use; plain data."""

    thread_id: str
    project: str
    operators: tuple[str, ...] = ()
    """Matrix user ids to mention (pill) on notices that need a human."""
    mirror: Any = None
    """The ``bridge.mirror`` config section: a ``MirrorConfig``, a mapping of it, or ``None``
    for defaults."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else. ``title``, ``stream_text``, ``stream_anchor`` and ``cwd`` are also read from
    here when the field of that name is ``None``. ``hook_event_id`` names the event's own
    anchors; ``compaction`` tells PostCompact and SessionStart(compact) which compaction notice
    is theirs (``delivery/context.py``)."""
    title: str | None = None
    """The room's current title (set from the first prompt). ``None``: the room has no title yet,
    so a UserPromptSubmit also renders an ``m.room.name`` state event."""
    stream_text: str | None = None
    """MessageDisplay: the concatenation of this stream's deltas up to and including this event
    (``None``: the event's own ``delta`` is all there is). Stop: the text the stream named by
    ``stream_anchor`` shows."""
    stream_anchor: str | None = None
    """Stop only: the anchor (``stream:<message_id>``) of the message that streamed this turn's
    last text, or ``None`` when nothing of this turn was streamed. The Stop then does not repost
    the reply (it edits that message if the stream's text differs from the final reply)."""
