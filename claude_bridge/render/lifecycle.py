"""Session lifecycle and attention events: start/end, notifications, failures (compaction is
in compaction.py).

Pings: Notification and StopFailure mention the operators (and the approval prompt,
``render/approval.py``). They are ``m.text``, not ``m.notice``: the default push rule
``.m.rule.suppress_notices`` silences every notice, mentions included, so a pinging notice would
never notify anyone. A Notification that only repeats an open permission request shows nothing.
"""

from __future__ import annotations

import json
from typing import Any

from claude_bridge.events.catalogue import (
    NOTIFICATION,
    PERMISSION_REQUEST,
    SESSION_END,
    SESSION_START,
    STOP_FAILURE,
)
from claude_bridge.events.models import (
    Notification,
    SessionEnd,
    SessionStart,
    StopFailure,
)
from claude_bridge.render.compaction import render_session_continues
from claude_bridge.render.content import Env, message, operators, pill
from claude_bridge.render.messages import OutboundMessage
from claude_bridge.render.registry import renders
from claude_bridge.render.text import esc, one_line, shorten

_NOTE_CHARS = 2_000

_END_REASONS = {
    "clear": "cleared with /clear",
    "logout": "logged out",
    "prompt_input_exit": "exited",
    "bypass_permissions_disabled": "bypass permissions disabled",
    "other": "ended",
}
_NOTIFY_ICONS = {
    "permission_prompt": "🔐",
    "idle_prompt": "💤",
    "auth_success": "🔑",
    "elicitation_dialog": "❓",
}


@renders(SESSION_START)
def render_session_start(event: SessionStart, env: Env) -> list[OutboundMessage]:
    source = event.source or "startup"
    model = f" (model {one_line(event.model, 80)})" if event.model else ""
    project = one_line(env.ctx.project, 100)
    if source == "compact":  # The same session goes on: the compaction's notice says so.
        return render_session_continues(event, env)
    texts = {
        "startup": f"▶️ Session started in {project}{model}" if project else "▶️ Session started",
        "resume": f"🔄 Session resumed{model}",
        "clear": "🧹 Conversation cleared",
    }
    body = texts.get(source, f"▶️ Session started ({one_line(source, 40)}){model}")
    # Where the session stands (topic, thread state) is render/room_status's.
    return [OutboundMessage(content=message(body))]


@renders(SESSION_END)
def render_session_end(event: SessionEnd, env: Env) -> list[OutboundMessage]:
    reason = event.reason or "other"
    said = _END_REASONS.get(reason, one_line(reason, 60))
    body = "⏹️ Session ended" + ("" if said == "ended" else f" ({said})")
    return [OutboundMessage(content=message(body))]


def _ping(env: Env, body: str, html: str) -> OutboundMessage:
    """A message that mentions the thread's operators: user ids in body, pills in HTML."""
    ops = operators(env)
    if ops:
        body += " — " + ", ".join(ops)
        html += " — " + ", ".join(pill(u) for u in ops)
    return OutboundMessage(
        content=message(body, html, msgtype="m.text" if ops else "m.notice", mentions=ops)
    )


@renders(NOTIFICATION)
def render_notification(event: Notification, env: Env) -> list[OutboundMessage]:
    if (
        event.notification_type == NOTIFICATION.echoes_approval
        and env.ctx.extra.get("echoes_approval")
        and env.opts.enabled(PERMISSION_REQUEST.name)
    ):
        # Claude Code's "needs your permission" for a request whose prompt is in the room and
        # pinged already: a second ping, and a line left stale once it is decided. Kept in the
        # store and the history; the prompt says it all.
        return []
    icon = _NOTIFY_ICONS.get(event.notification_type or "", "🔔")
    text = shorten(event.message.strip(), _NOTE_CHARS)
    title = one_line(event.title or "", 120)
    if not text:
        text = title or one_line(event.notification_type or NOTIFICATION.name, 60)
        title = ""
    body = f"{icon} {title}: {text}" if title else f"{icon} {text}"
    html = f"{icon} <b>{esc(title)}</b>: {esc(text)}" if title else f"{icon} {esc(text)}"
    return [_ping(env, body, html)]


@renders(STOP_FAILURE)
def render_stop_failure(event: StopFailure, env: Env) -> list[OutboundMessage]:
    extra = event.extra
    kind = _text(extra.get("error_type")) or _text(event.error) or "error"
    detail = (
        _text(extra.get("error_message"))
        or _text(event.error_details)
        or (_text(event.error) if _text(event.error) != kind else "")
    )
    kind = one_line(kind.replace("_", " "), 80)
    detail = shorten(detail.strip(), _NOTE_CHARS)
    body = f"⚠️ Claude stopped: {kind}" + (f"\n{detail}" if detail else "")
    html = f"⚠️ <b>Claude stopped</b>: {esc(kind)}" + (
        f"<br>{esc(detail).replace(chr(10), '<br>')}" if detail else ""
    )
    return [_ping(env, body, html)]


def _text(value: Any) -> str:
    """An error field as text: strings as is, objects by their message or as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in ("message", "error_message", "type"):
            if isinstance(value.get(key), str):
                return str(value[key])
    return json.dumps(value, ensure_ascii=False, default=str)
