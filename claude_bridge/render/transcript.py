"""A hook event as Markdown, the way the room shows it, for ``export --format markdown``.

The room gets Matrix content; a file wants Markdown. Each event becomes an entry with the same
words as in the room: the tool line with its icon, an MCP server's tool as ``server › tool``, paths
relative to the project, and under it the output as the room shows it (a unified diff, console
output, the lines a Read returned), folded in ``<details>`` when it is long; Claude's replies as
the Markdown Claude wrote; the compaction summary without its tags. Pure: payloads in, text out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from claude_bridge.events import catalogue as c
from claude_bridge.render.blocks import Frame
from claude_bridge.render.compaction import summary_text
from claude_bridge.render.diff import EDIT_TOOLS, unified_diff
from claude_bridge.render.notices import MINOR_EVENTS
from claude_bridge.render.text import esc, one_line, plural
from claude_bridge.render.tool_output import shaped_output
from claude_bridge.render.tools import display_name, icon, output_text, relative, summary

EXPORT_LINES = 500
"""Longest output kept in a file (the JSON export has all of it)."""
OPEN_LINES = 5
"""Output up to this many lines is shown as is; longer output is folded in ``<details>``."""
SKIPPED = frozenset({c.MESSAGE_DISPLAY, c.POST_TOOL_BATCH})
"""Shown in the room only through other events: the streamed reply is the Stop's, a batch's
calls are their own."""
_MARKUP = re.compile(r"([\\`*_\[\]<>#|])")


@dataclass(frozen=True)
class Entry:
    title: str
    """Markdown for the entry's first line, e.g. ``💻 **Bash**: `npm test```."""
    body: str = ""
    """Markdown under it (may be empty)."""


def transcript_entry(name: str, data: dict[str, Any], cwd: str | None) -> Entry | None:
    """The entry for one stored hook event; ``None`` for events the room shows nothing of.
    ``cwd`` is the project's directory (paths in it are shown relative to it). A PostToolUse
    entry repeats its call's line, so the export can leave out the PreToolUse."""
    if data.get("pruned"):
        return Entry(f"· **{_plain(name)}** (payload pruned by retention)")
    kind = c.kind_of(name)
    if kind in SKIPPED:
        return None
    get = _getter(data)
    cwd = cwd or get("cwd") or None
    tool_name = get("tool_name")
    raw_input = data.get("tool_input")
    tool_input: dict[str, Any] = raw_input if isinstance(raw_input, dict) else {}
    if kind is c.USER_PROMPT_SUBMIT:
        prompt = get("prompt")
        return Entry("🧑‍💻 **Prompt**", _quote(prompt)) if prompt.strip() else None
    if kind in (c.STOP, c.SUBAGENT_STOP):
        reply = get("last_assistant_message")
        agent = get("agent_type")
        who = f"{_plain(one_line(agent, 60))} (subagent)" if agent else "Claude"
        return Entry(f"🤖 **{who}**", reply.strip()) if reply.strip() else None
    if kind is c.STOP_FAILURE:
        error = get("error_type") or _text(data.get("error")) or "error"
        detail = get("error_message") or _text(data.get("error_details"))
        return Entry(f"⚠️ **Claude stopped**: {_plain(error.replace('_', ' '))}", _quote(detail))
    if kind is c.PRE_TOOL_USE:
        return Entry(tool_title(tool_name, tool_input, cwd))
    if kind is c.POST_TOOL_USE:
        shown = shaped_output(tool_name, tool_input, data.get("tool_response"), cwd)
        body = _output(*shown) if shown else ""
        return Entry(tool_title(tool_name, tool_input, cwd), body)
    if kind is c.POST_TOOL_USE_FAILURE:
        error = output_text(data.get("error")).strip()
        lead = "⏹️ " if data.get("is_interrupt") else "❌ "
        frame = Frame(language="console" if tool_name == "Bash" else None)
        body = _output(error, frame, "error") if error else ""
        return Entry(tool_title(tool_name, tool_input, cwd, prefix=lead), body)
    if kind is c.PERMISSION_REQUEST:
        title = tool_title(tool_name, tool_input, cwd, prefix="🔐 Claude asks to use ")
        return Entry(title, _permission_detail(tool_name, tool_input, cwd))
    if kind is c.PERMISSION_DENIED:
        reason = one_line(get("reason"), 200)
        title = tool_title(tool_name, tool_input, cwd, prefix="🚫 ")
        return Entry(title + (f" — {_plain(reason)}" if reason else " — denied"))
    return _lifecycle(name, data, cwd)


def tool_title(name: str, tool_input: dict[str, Any], cwd: str | None, *, prefix: str = "") -> str:
    """A tool call's line, as in the room: ``💻 **Bash**: `npm test```."""
    arg = summary(name, tool_input, cwd, 200)
    title = f"{prefix}{icon(name)} **{_plain(display_name(name))}**"
    return title + (f": {_code_span(arg)}" if arg else "")


def _lifecycle(name: str, data: dict[str, Any], cwd: str | None) -> Entry | None:
    get = _getter(data)
    kind = c.kind_of(name)
    if kind is c.SESSION_START:
        source = get("source") or "startup"
        said = {"startup": "▶️ **Session started**", "resume": "🔄 **Session resumed**",
                "clear": "🧹 **Conversation cleared**"}  # fmt: skip
        if source == "compact":  # the compaction's own entries say it
            return None
        return Entry(said.get(source, f"▶️ **Session started** ({_plain(source)})"))
    if kind is c.SESSION_END:
        return Entry(f"⏹️ **Session ended** ({_plain(get('reason') or 'other')})")
    if kind in (c.PRE_COMPACT, c.POST_COMPACT):
        what = "Compacting the conversation" if kind is c.PRE_COMPACT else "Conversation compacted"
        how = {"auto": " (automatic)", "manual": " (manual)"}.get(get("trigger"), "")
        asked = one_line(get("custom_instructions"), 200)
        title = f"🗜️ **{what}**{how}" + (f" — “{_plain(asked)}”" if asked else "")
        text = summary_text(get("compact_summary"))
        return Entry(title, _details("summary", text) if text else "")
    if kind is c.NOTIFICATION:
        mark = {"permission_prompt": "🔐", "idle_prompt": "💤"}.get(get("notification_type"), "🔔")
        title = one_line(get("title"), 120) or c.NOTIFICATION.name
        return Entry(f"{mark} **{_plain(title)}**", _quote(get("message")))
    if kind is c.SUBAGENT_START:
        agent = one_line(get("agent_type"), 80)
        return Entry("🤖 **Subagent started**" + (f" ({_plain(agent)})" if agent else ""))
    if name in MINOR_EVENTS:
        mark, label, fields = MINOR_EVENTS[name]
        values = [relative(get(f), cwd) if f.endswith(("path", "cwd")) else get(f) for f in fields]
        shown = ", ".join(_code_span(one_line(v, 200)) for v in values if v)
        return Entry(f"{mark} **{_plain(label)}**" + (f": {shown}" if shown else ""))
    return Entry(f"⚙️ **{_plain(one_line(name, 128) or 'event')}**")


def _permission_detail(name: str, tool_input: dict[str, Any], cwd: str | None) -> str:
    command = tool_input.get("command")
    if name == "Bash" and isinstance(command, str):
        return _fenced(command, "console")
    if name in EDIT_TOOLS and (diff := unified_diff(name, tool_input, cwd, 3)):
        return _output(diff, Frame(language="diff"), "diff")
    return ""


def _output(text: str, frame: Frame, kind: str) -> str:
    """An output under its call: lines, then folded when long; capped at EXPORT_LINES."""
    lines = text.rstrip().split("\n")
    if len(lines) > EXPORT_LINES:
        more = len(lines) - EXPORT_LINES
        text = "\n".join(lines[:EXPORT_LINES]) + f"\n… ({plural(more, 'more line')})"
    if frame.style == "code":
        shown = _fenced(text.rstrip(), frame.language)
    elif frame.style == "plain":
        shown = "  \n".join(_plain(line) for line in text.rstrip().split("\n"))
    else:
        shown = text.strip()
    shown += f"\n\n{_plain(frame.tail_body)}" if frame.tail_body else ""
    label = frame.lead_body or {"diff": "diff", "todos": "to-do list"}.get(kind, kind)
    if len(lines) <= OPEN_LINES:
        return f"*{_plain(label)}*\n\n{shown}" if frame.lead_body else shown
    return _details(
        f"{label} · {plural(len(lines), 'line')}" if "line" not in label else label, shown
    )


def _details(summary_line: str, markdown: str) -> str:
    return f"<details><summary>{esc(summary_line)}</summary>\n\n{markdown}\n\n</details>"


def _fenced(text: str, language: str | None) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language or ''}\n{text}\n{fence}"


def _code_span(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _plain(text: str) -> str:
    """Text that Markdown shows as written."""
    return _MARKUP.sub(r"\\\1", text)


def _quote(text: str) -> str:
    text = text.strip("\n")
    return "\n".join(f"> {line}" if line else ">" for line in text.split("\n")) if text else ""


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("message"), str):
        return str(value["message"])
    return ""


def _getter(data: dict[str, Any]) -> Any:
    def get(key: str) -> str:
        value = data.get(key)
        return value if isinstance(value, str) else ""

    return get
