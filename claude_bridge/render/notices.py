"""One-line notices for the documented events that need no more, and for unknown events.

Claude Code adds hook events between versions; an event the catalogue does not know (or lists
without a renderer of its own) still shows up as ``⚙️ <name>`` instead of vanishing, so a new
event is noticed (and can be switched off).
"""

from __future__ import annotations

from typing import Any

from claude_bridge.events.catalogue import (
    CONFIG_CHANGE,
    CWD_CHANGED,
    ELICITATION,
    ELICITATION_RESULT,
    FILE_CHANGED,
    INSTRUCTIONS_LOADED,
    POST_TOOL_USE,
    POST_TOOL_USE_FAILURE,
    PRE_TOOL_USE,
    SETUP,
    TASK_COMPLETED,
    TASK_CREATED,
    TEAMMATE_IDLE,
    WORKTREE_CREATE,
    WORKTREE_REMOVE,
)
from claude_bridge.events.models import HookEvent
from claude_bridge.render.content import Env, message, project_dir, speaker
from claude_bridge.render.messages import OutboundMessage
from claude_bridge.render.registry import RENDERERS
from claude_bridge.render.text import esc, one_line
from claude_bridge.render.tools import relative

# name → (icon, label, input fields shown after the label, in order)
MINOR_EVENTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    SETUP.name: ("🛠️", SETUP.name, ("trigger",)),  # its name says it
    INSTRUCTIONS_LOADED.name: ("📜", "Instructions loaded", ("file_path", "load_reason")),
    CONFIG_CHANGE.name: ("⚙️", "Configuration changed", ("source", "file_path")),
    CWD_CHANGED.name: ("📂", "Working directory changed", ("old_cwd", "new_cwd")),
    FILE_CHANGED.name: ("📄", "File changed", ("file_path", "event")),
    WORKTREE_CREATE.name: ("🌳", "Worktree created", ("name", "worktree_path")),
    WORKTREE_REMOVE.name: ("🌳", "Worktree removed", ("worktree_path",)),
    TASK_CREATED.name: ("📌", "Task created", ("task_subject", "teammate_name")),
    TASK_COMPLETED.name: ("✅", "Task completed", ("task_subject", "teammate_name")),
    TEAMMATE_IDLE.name: ("💤", "Teammate idle", ("teammate_name", "team_name")),
    ELICITATION.name: ("❓", "MCP server asks for input", ("mcp_server_name", "message")),
    ELICITATION_RESULT.name: ("💬", "MCP input answered", ("mcp_server_name", "action")),
}
_FIELD_CHARS = 200


def render_minor(event: HookEvent, env: Env) -> list[OutboundMessage]:
    icon, label, fields = MINOR_EVENTS[event.hook_event_name]
    cwd = project_dir(event, env)
    values = [
        _value(event.extra.get(f), cwd if f.endswith(("path", "cwd")) else None) for f in fields
    ]
    shown = [v for v in values if v]
    sep = " → " if event.hook_event_name == CWD_CHANGED.name else " · "
    body = f"{icon} {label}" + (": " + sep.join(shown) if shown else "")
    html = f"{icon} {esc(label)}" + (
        ": " + sep.join(f"<code>{esc(v)}</code>" for v in shown) if shown else ""
    )
    sender, displayname = speaker(event)
    return [
        OutboundMessage(content=message(body, html), sender=sender, sender_displayname=displayname)
    ]


for _name in MINOR_EVENTS:
    RENDERERS.register(_name, render_minor)


def render_unknown(event: HookEvent, env: Env) -> list[OutboundMessage]:
    name = one_line(event.hook_event_name, 128) or "event"
    return [OutboundMessage(content=message(f"⚙️ {name}"))]


def _value(value: Any, cwd: str | None = None) -> str:
    """A field as shown; a path (``cwd`` given) relative to the project when it is in it."""
    if isinstance(value, str):
        return one_line(relative(value, cwd) if cwd and value else value, _FIELD_CHARS)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


FOLD_ICON = "⏩"
# How a folded backlog's events are counted in its notice; any other name is "other events".
_FOLDED_KINDS = (
    (PRE_TOOL_USE.name, "tool call"),
    (POST_TOOL_USE.name, "output"),
    (POST_TOOL_USE_FAILURE.name, "failed call"),
)


def folded_notice(kinds: dict[str, int], *, replaces: str | None, anchor: str) -> OutboundMessage:
    """The notice telling a room that the oldest detail of its backlog was folded (stored, not
    sent): ``kinds`` counts the folded events by hook event name. A later fold of the same
    backlog edits it (``replaces``) with the new totals instead of posting another."""
    total = sum(kinds.values())
    known = dict(_FOLDED_KINDS)
    parts = [_count(kinds.get(name, 0), label) for name, label in _FOLDED_KINDS]
    parts.append(_count(sum(n for k, n in kinds.items() if k not in known), "other event"))
    detail = ", ".join(p for p in parts if p)
    lead = f"{FOLD_ICON} Catching up: {total:,} event{'' if total == 1 else 's'} folded"
    rest = (
        f" ({detail}) — this session ran far ahead of its room. Prompts, replies, approvals "
        "and notifications are all shown; the folded detail stays in the bridge's store."
    )
    return OutboundMessage(
        content=message(lead + rest, f"<b>{esc(lead)}</b>{esc(rest)}"),
        anchor=None if replaces else anchor,
        replaces=replaces,
    )


def _count(n: int, label: str) -> str:
    return f"{n:,} {label}{'' if n == 1 else 's'}" if n else ""
