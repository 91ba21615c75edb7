"""Coalescing: a run of queued one-line notices becomes one Matrix message.

When a thread's queue holds several events at once (a burst, or catching up after an outage),
their tool-call lines are sent as one ``m.notice`` with one line per event instead of one message
each: the room catches up at the homeserver's message rate times the lines per message. An idle
event is never held back to wait for company; only what is already queued is merged.

A merged message keeps what each line was: every line's anchor (``tool:<id>``) is recorded against
the merged event, so output still threads under it and a failed call still edits its own line;
the lines are stored (``merged_message``) so such an edit re-sends the whole message with only
that line changed. The content names its lines' hook events under ``LINES_FIELD``, which lets a
restarted bridge that finds the message in the room (``txn_lookup``) record every line it holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from claude_bridge.render.messages import OutboundMessage
from claude_bridge.render.text import esc
from claude_bridge.store.merged_lines import Line

LINES_FIELD = "org.claude_bridge.lines"
"""In a merged message's content: ``[{"hook_event": id, "part": n, "anchor": a}, …]``."""
PARTS_FIELD = "org.claude_bridge.parts"
"""In a merged thread reply's content: ``[[hook event id, part], …]``."""
MAX_LINE_BYTES = 1_000
MAX_REPLY_BYTES = 4_096
JOIN_HTML = "<br>"


def _plain_text(
    message: OutboundMessage, msgtypes: tuple[str, ...], max_bytes: int
) -> tuple[str, str] | None:
    """(body, html) of a text message that edits, pings and attaches nothing, within
    ``max_bytes``; ``None`` for any other message."""
    content = message.content
    if (
        message.event_type != "m.room.message"
        or message.state_key is not None
        or message.attachment is not None
        or message.replaces is not None
        or content.get("msgtype") not in msgtypes
        or content.get("m.mentions", {}).get("user_ids")
    ):
        return None
    body, html = content.get("body"), content.get("formatted_body", "")
    if not isinstance(body, str) or not isinstance(html, str):
        return None
    return (body, html) if len(body.encode()) + len(html.encode()) <= max_bytes else None


def mergeable(message: OutboundMessage) -> bool:
    """A plain one-line notice in the timeline: nothing refers to it by relation or mention."""
    text = _plain_text(message, ("m.notice",), MAX_LINE_BYTES)
    return (
        text is not None
        and message.thread_root is None
        and "\n" not in text[0]
        and JOIN_HTML not in text[1]
    )


def follows_group(message: OutboundMessage) -> bool:
    """A message that may go out after the group's merged line: a reply in some call's thread
    (its root is either already in the room or one of the group's lines)."""
    return message.thread_root is not None and message.replaces is None


def mergeable_reply(message: OutboundMessage, roots: set[str]) -> bool:
    """Tool output small enough to share one thread message with the other calls' output
    under the same merged message (``roots``: its lines' anchors). Nothing ever edits it."""
    return (
        message.thread_root in roots
        and message.anchor is None
        and _plain_text(message, ("m.notice", "m.text"), MAX_REPLY_BYTES) is not None
    )


@dataclass(frozen=True)
class Reply:
    hook_event: int
    part: int
    content: dict[str, Any]
    line: Line
    """The line of the call this output belongs to (it leads the output)."""

    @property
    def size(self) -> int:
        return len(json.dumps(self.content).encode()) + len(self.line.html.encode()) * 2


def merged_replies(replies: list[Reply]) -> dict[str, Any]:
    """One thread message holding several calls' output, each led by its call's line."""
    shown = [in_reply_to_line(r.content, r.line) for r in replies]
    return {
        "msgtype": "m.notice",
        "body": "\n\n".join(x["body"] for x in shown),
        "format": "org.matrix.custom.html",
        "formatted_body": "".join(x["formatted_body"] for x in shown),
        "m.mentions": {},
        PARTS_FIELD: [[r.hook_event, r.part] for r in replies],
    }


def parts_from_content(content: dict[str, Any]) -> list[tuple[int, int]] | None:
    """The (hook event, part) pairs a merged reply found in the room holds."""
    refs = content.get(PARTS_FIELD)
    if not isinstance(refs, list):
        return None
    out = []
    for ref in refs:
        if not (isinstance(ref, list) and len(ref) == 2 and all(isinstance(x, int) for x in ref)):
            return None
        out.append((ref[0], ref[1]))
    return out


def line_of(hook_event: int, part: int, message: OutboundMessage) -> Line:
    content = message.content
    body = str(content["body"])
    html = content.get("formatted_body")
    return Line(
        hook_event, part, message.anchor, body, html if isinstance(html, str) else esc(body)
    )


def size(lines: list[Line]) -> int:
    return sum(len(x.body.encode()) + len(x.html.encode()) + 8 for x in lines)


def merged_content(lines: list[Line]) -> dict[str, Any]:
    """The ``m.notice`` showing ``lines`` one per line, naming the hook event of each."""
    return {
        "msgtype": "m.notice",
        "body": "\n".join(x.body for x in lines),
        "format": "org.matrix.custom.html",
        "formatted_body": JOIN_HTML.join(x.html for x in lines),
        "m.mentions": {},
        LINES_FIELD: [
            {"hook_event": x.hook_event, "part": x.part, "anchor": x.anchor} for x in lines
        ],
    }


def lines_from_content(content: dict[str, Any]) -> list[Line] | None:
    """The lines of a merged message found in the room, or ``None`` for any other message."""
    refs = content.get(LINES_FIELD)
    body, html = content.get("body"), content.get("formatted_body")
    if not isinstance(refs, list) or not isinstance(body, str) or not isinstance(html, str):
        return None
    bodies, htmls = body.split("\n"), html.split(JOIN_HTML)
    if not (len(refs) == len(bodies) == len(htmls)):
        return None
    lines = []
    for ref, b, h in zip(refs, bodies, htmls, strict=True):
        if not isinstance(ref, dict) or not isinstance(ref.get("hook_event"), int):
            return None
        anchor = ref.get("anchor")
        lines.append(
            Line(ref["hook_event"], int(ref.get("part") or 0), anchor if anchor else None, b, h)
        )
    return lines


def replace_line(lines: list[Line], anchor: str, new: OutboundMessage) -> list[Line]:
    """``lines`` with the one anchored ``anchor`` showing ``new`` (an edit's content) instead."""
    body = str(new.content.get("body", "")).replace("\n", " ")
    html = new.content.get("formatted_body")
    html = html.replace(JOIN_HTML, " ") if isinstance(html, str) else esc(body)
    return [
        Line(x.hook_event, x.part, x.anchor, body, html) if x.anchor == anchor else x for x in lines
    ]


def in_reply_to_line(content: dict[str, Any], line: Line) -> dict[str, Any]:
    """A thread reply under a merged message leads with the line it belongs to, since the
    thread holds the replies of every call in that message."""
    if content.get("msgtype") not in ("m.notice", "m.text") or not isinstance(
        content.get("body"), str
    ):
        return content
    out = {**content, "body": f"↳ {line.body}\n{content['body']}"}
    html = content.get("formatted_body")
    out["format"] = "org.matrix.custom.html"
    out["formatted_body"] = f"<p>↳ {line.html}</p>" + (
        html if isinstance(html, str) else esc(content["body"]).replace("\n", "<br>")
    )
    return out
