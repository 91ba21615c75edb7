"""Compaction: one notice per compaction, edited as it goes.

Claude Code reports a compaction with three events: PreCompact, SessionStart with ``source:
"compact"``, and PostCompact with the summary it wrote (in that order in 2.1.332; 2.1.197 sent
PostCompact before the SessionStart). PreCompact posts the notice, anchored ``compact:<its hook
event id>``; the other two edit it: "Compacting the conversation…" becomes "Conversation
compacted", then shows the summary with Claude's ``<analysis>``/``<summary>`` tags stripped and
its Markdown rendered. A summary longer than a few lines goes into the notice's thread instead,
so the timeline keeps one line; like a tool's output it is previewed there (``max_inline_lines``)
with the whole summary attached, since many clients show thread replies in the timeline.

Delivery tells the later events which notice is theirs (``ctx.extra["compaction"]``, see
``delivery/context.py``). Without it (no PreCompact recorded), PostCompact posts a notice of its
own and SessionStart says the session continues.
"""

from __future__ import annotations

import re
from typing import Any

from claude_bridge.events.catalogue import POST_COMPACT, PRE_COMPACT
from claude_bridge.events.models import PostCompact, PreCompact, SessionStart
from claude_bridge.render.blocks import Frame, long_text
from claude_bridge.render.content import Env, message
from claude_bridge.render.messages import OutboundMessage
from claude_bridge.render.registry import renders
from claude_bridge.render.text import esc, one_line, plural

SUMMARY_LINES = 6
"""A summary up to this many lines (and :data:`SUMMARY_CHARS`) is shown in the notice itself."""
SUMMARY_CHARS = 600
_ANALYSIS = re.compile(r"<analysis>.*?</analysis>", re.S)
_SUMMARY = re.compile(r"<summary>(.*?)(?:</summary>|\Z)", re.S)
_TRIGGERS = {"auto": " (automatic)", "manual": " (manual)"}


def compact_anchor(hook_event_id: object) -> str:
    """The anchor of a compaction's notice: its PreCompact's hook event id."""
    return f"compact:{hook_event_id}"


def summary_text(raw: str) -> str:
    """The summary Claude wrote, without its ``<analysis>`` and the ``<summary>`` tags."""
    text = _ANALYSIS.sub("", raw)
    found = _SUMMARY.search(text)
    text = found.group(1) if found else text.replace("</summary>", "")
    return text.strip()


def _lead(*, done: bool, trigger: Any, instructions: Any) -> tuple[str, str]:
    """(body, html) of the notice's first line."""
    what = "Conversation compacted" if done else "Compacting the conversation"
    how = _TRIGGERS.get(trigger, "") if isinstance(trigger, str) else ""
    body, html = f"🗜️ {what}{how}", f"🗜️ <b>{what}</b>{how}"
    asked = one_line(instructions, 200) if isinstance(instructions, str) else ""
    if asked:
        body, html = f"{body} — “{asked}”", f"{html} — <i>{esc(asked)}</i>"
    return (body, html) if done else (f"{body}…", f"{html}…")


def _info(env: Env) -> dict[str, Any]:
    info = env.ctx.extra.get("compaction")
    return info if isinstance(info, dict) else {}


@renders(PRE_COMPACT)
def render_pre_compact(event: PreCompact, env: Env) -> list[OutboundMessage]:
    body, html = _lead(done=False, trigger=event.trigger, instructions=event.custom_instructions)
    own = env.ctx.extra.get("hook_event_id")
    anchor = compact_anchor(own) if own is not None else None
    return [OutboundMessage(content=message(body, html), anchor=anchor)]


@renders(POST_COMPACT)
def render_post_compact(event: PostCompact, env: Env) -> list[OutboundMessage]:
    info = _info(env)
    pre = info.get("pre_compact")
    key = pre if pre is not None else env.ctx.extra.get("hook_event_id")
    notice = compact_anchor(key) if key is not None else None
    # Edit the PreCompact's notice; without one, this is the notice.
    edit = pre is not None
    anchor, replaces = (None, notice) if edit else (notice, None)
    body, html = _lead(
        done=True,
        trigger=event.trigger or info.get("trigger"),
        instructions=info.get("instructions"),
    )
    summary = summary_text(event.compact_summary or "")
    if not summary:
        return [OutboundMessage(message(body, html), anchor=anchor, replaces=replaces)]
    lines = len(summary.splitlines())
    if lines <= SUMMARY_LINES and len(summary) <= SUMMARY_CHARS:
        frame = Frame(lead_body=body, lead_html=html, style="markdown")
        return long_text(
            env, summary, frame, attach_as=None, limited=False, anchor=anchor, replaces=replaces
        )
    where = f" — summary in the thread ({plural(lines, 'line')})"
    content = message(body + where, html + esc(where))
    notice_msg = OutboundMessage(content, anchor=anchor, replaces=replaces)
    frame = Frame(lead_body="🗜️ Summary", lead_html="🗜️ <b>Summary</b>", style="markdown")
    # As short as a tool's output: clients that show thread replies in the timeline show this.
    summary_msgs = long_text(
        env, summary, frame, attach_as="compact-summary.md", thread_root=notice
    )
    return [notice_msg, *summary_msgs]


def render_session_continues(event: SessionStart, env: Env) -> list[OutboundMessage]:
    """SessionStart after a compaction: the notice says it is done, unless PostCompact said so
    already; without a notice, one line."""
    info = _info(env)
    if info.get("done"):
        return []
    pre = info.get("pre_compact")
    if pre is None:
        return [OutboundMessage(content=message("🗜️ Session continues after compaction"))]
    body, html = _lead(
        done=True, trigger=info.get("trigger"), instructions=info.get("instructions")
    )
    return [OutboundMessage(content=message(body, html), replaces=compact_anchor(pre))]
