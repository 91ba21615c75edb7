"""What a thread room says about its session: where it stands (working, waiting for you, waiting
for approval, ended), in its topic and in the ``org.claude_bridge.thread`` state event.

Pure and shared by every writer of that state (room creation in ``router``, the changes delivery
sends, ``!claude archive``), so none of them writes a partial event: the state event always holds
the session id, project and working directory, plus where the session stands.

Where it stands follows the hook events (``activity_after``); the room is told only when that
changes, so a turn costs two topic changes (working, then waiting for you), not one per event.
"""

from __future__ import annotations

from typing import Any

from claude_bridge.events.catalogue import NOTIFICATION, SESSION_START, Standing, kind_of
from claude_bridge.events.models import HookEvent

THREAD_STATE = "org.claude_bridge.thread"

WORKING = Standing.WORKING.value
WAITING = Standing.WAITING.value
APPROVAL = Standing.APPROVAL.value
ENDED = Standing.ENDED.value
ACTIVITIES = tuple(s.value for s in Standing)

LABELS = {
    WORKING: "⚙️ Working",
    WAITING: "💬 Waiting for you",
    APPROVAL: "🔐 Waiting for approval",
    ENDED: "⏹️ Ended",
}

# What a notification says, by its type; the others (auth_success, …) say nothing.
_NOTIFICATIONS = {
    "permission_prompt": APPROVAL,
    "idle_prompt": WAITING,
    "elicitation_dialog": WAITING,
}


def activity_after(event: HookEvent, current: str | None = None) -> str | None:
    """Where the session stands after ``event`` (the catalogue's ``standing``), or None when
    the event does not say. A compaction's SessionStart continues the session as it was. An
    ended session stays ended until it starts again (a straggling event after SessionEnd does
    not revive it; ``claude --resume`` sends SessionStart).
    """
    kind = kind_of(event.hook_event_name)
    if kind is SESSION_START:
        source = getattr(event, "source", None) or event.extra.get("source")
        return None if source == "compact" else WAITING
    if current == ENDED:
        return None
    if kind is NOTIFICATION:
        which = getattr(event, "notification_type", None) or event.extra.get("notification_type")
        return _NOTIFICATIONS.get(which) if isinstance(which, str) else None
    return kind.standing.value if kind.standing is not None else None


def starting_activity(event: HookEvent | None) -> str:
    """What a room created for ``event`` says at once (its first event is usually SessionStart:
    the session waits for its first prompt); a session first seen mid-turn is working."""
    if event is None:
        return WORKING
    if kind_of(event.hook_event_name) is SESSION_START:
        return WAITING
    return activity_after(event) or WORKING


def session_tag(session_id: str) -> str:
    """A short tag telling a session's room and ghost from its project's other sessions."""
    return session_id[:6]


def resume_command(session_id: str) -> str:
    return f"claude --resume {session_id}"


def topic_text(
    activity: str, project: str | None, session_id: str, cwd: str | None, *, archived: bool = False
) -> str:
    """Short while the session runs (every change shows as a line in the timeline); once it has
    ended, how to go on with it (an archived room is not mirrored to any more)."""
    label = "📦 Archived" if archived else LABELS.get(activity, LABELS[WORKING])
    if activity == ENDED and not archived:
        # Plain text: clients show a topic as it is, so no Markdown quoting.
        where = f" (in {cwd})" if cwd else ""
        return f"{label} · go on with: {resume_command(session_id)}{where}"
    return " · ".join(p for p in (label, project, f"session {session_tag(session_id)}") if p)


def topic_content(text: str) -> dict[str, Any]:
    """``m.room.topic`` content: the plain topic and its rich form (``m.topic``, Matrix 1.15)."""
    return {"topic": text, "m.topic": {"m.text": [{"mimetype": "text/plain", "body": text}]}}


def thread_state(
    *,
    session_id: str,
    project: str | None,
    cwd: str | None,
    activity: str | None,
    archived: bool = False,
) -> dict[str, Any]:
    """The whole ``org.claude_bridge.thread`` content. ``status`` is ``active`` or ``ended`` (as
    before ``activity`` existed), ``activity`` one of ``ACTIVITIES``; what is not known is left
    out rather than written as null."""
    ended = archived or activity == ENDED
    content: dict[str, Any] = {
        "session_id": session_id,
        "project": project,
        "cwd": cwd,
        "status": "ended" if ended else "active",
        "activity": ENDED if ended else activity,
    }
    if archived:
        content["archived"] = True
    return {key: value for key, value in content.items() if value is not None}


def merged(current: dict[str, Any] | None, update: dict[str, Any]) -> dict[str, Any]:
    """``update`` laid over the room's current content: keys it does not name, or names with
    None (not known to this writer), keep their value."""
    out = dict(current or {})
    out.update({key: value for key, value in update.items() if value is not None})
    return out
