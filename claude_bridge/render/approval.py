"""The approval prompt a PermissionRequest posts: one compact message, the one that pings.

What Claude wants to do is shown once. The tool line carries a command that fits on one line,
with Claude's description of it; a longer command, an edit's diff, a file's new content or a
tool's other input follows as one block. Then how to answer, and the operators mentioned. It is
``m.text``: the default push rule ``.m.rule.suppress_notices`` silences notices, mentions too.

The request part (the prompt without its question and instructions) is kept in the content under
``REQUEST_FIELD``: once the request is settled, ``control/receipts`` edits the prompt to the
outcome over that same part (``control/decisions.settled_content``). The instructions and the
mentions go; what was decided stays readable.
"""

from __future__ import annotations

import json
from typing import Any

from claude_bridge.events.catalogue import PERMISSION_REQUEST
from claude_bridge.events.models import PermissionRequest
from claude_bridge.render.blocks import code
from claude_bridge.render.content import Env, message, operators, pill, project_dir, speaker
from claude_bridge.render.diff import EDIT_TOOLS, Seen, unified_diff
from claude_bridge.render.messages import OutboundMessage
from claude_bridge.render.registry import renders
from claude_bridge.render.text import esc, one_line, plural
from claude_bridge.render.tools import tool_line
from claude_bridge.render.trim import limit_lines, marker

REQUEST_FIELD = "org.claude_bridge.request"
"""In a prompt's content: ``{"body": …, "formatted_body": …}`` of its request part."""
ATTACHED_BY_FIELD = "attached_by"
"""In ``ctx.extra``: the operator whose attached file this Read names; the bridge allows it at
once (``control/attached_reads``), so the prompt says so and pings nobody."""
ASK = "🔐 Claude asks to use "
DETAIL_LINES = 30
DETAIL_BYTES = 4_000


def permission_anchor(hook_event_id: object) -> str:
    """The anchor of the approval prompt a PermissionRequest posts (control finds it by this)."""
    return f"perm:{hook_event_id}"


def instructions(session_rule: bool) -> str:
    """How to answer; 🔁 only when Claude Code offered a rule that "for this session" adds."""
    always = "🔁 allow for this session · " if session_rule else ""
    return f"React ✅ allow once · {always}❌ deny — or reply deny <reason>"


@renders(PERMISSION_REQUEST)
def render_permission_request(event: PermissionRequest, env: Env) -> list[OutboundMessage]:
    line_body, line_html, block = request_part(event, env)
    block_body, block_html = block or ("", "")
    ops = operators(env)
    if isinstance(by := env.ctx.extra.get(ATTACHED_BY_FIELD), str):
        ops, done = [], f"✅ Allowed: reading the file {by} attached"
        body = "\n".join(p for p in (done, line_body, block_body) if p)
        html = f"<p><b>{esc(done)}</b></p><p>{line_html}</p>{block_html}"
        content = message(body, html, msgtype="m.text")
    else:
        content = _prompt(event, line_body, line_html, block_body, block_html, ops)
    content[REQUEST_FIELD] = {
        "body": "\n".join(p for p in (line_body, block_body) if p),
        "formatted_body": f"<p>{line_html}</p>{block_html}",
    }
    hook_event_id = env.ctx.extra.get("hook_event_id")
    sender, displayname = speaker(event)
    return [
        OutboundMessage(
            content=content,
            sender=sender,
            sender_displayname=displayname,
            anchor=permission_anchor(hook_event_id) if hook_event_id is not None else None,
        )
    ]


def _prompt(
    event: PermissionRequest,
    line_body: str,
    line_html: str,
    block_body: str,
    block_html: str,
    ops: list[str],
) -> dict[str, Any]:
    """The question, how to answer, and the operators mentioned (the message that pings)."""
    how = instructions(bool(event.permission_suggestions))
    how_body = how + (" — " + ", ".join(ops) if ops else "")
    how_html = esc(how) + (" — " + ", ".join(pill(u) for u in ops) if ops else "")
    body = "\n".join(p for p in (ASK + line_body, block_body, how_body) if p)
    html = f"<p>{esc(ASK)}{line_html}</p>{block_html}<p>{how_html}</p>"
    return message(body, html, msgtype="m.text", mentions=ops)


def request_part(event: PermissionRequest, env: Env) -> tuple[str, str, tuple[str, str] | None]:
    """(body, html) of the call's line, and the (body, html) of its block if it has one."""
    name, tool_input, cwd = event.tool_name, event.tool_input, project_dir(event, env)
    width = env.opts.tool_line_length
    description = _text(tool_input.get("description"))
    note = one_line(description, 120)
    command = _text(tool_input.get("command")).strip()
    if name == "Bash" and command:
        if one_line(command, width) == command:  # the line shows it exactly, and whole
            return (*tool_line(name, tool_input, cwd, width, note=note), None)
        return (*tool_line(name, {}, cwd, width, note=note), _block(command, "bash"))
    if name in EDIT_TOOLS:
        seen = env.ctx.extra.get("seen")  # what the session last saw of the file
        seen = seen if isinstance(seen, Seen) else None
        diff = unified_diff(name, tool_input, cwd, env.opts.diff_context_lines, seen=seen)
        if diff:
            every = "every occurrence" if tool_input.get("replace_all") is True else ""
            return (*tool_line(name, tool_input, cwd, width, note=every), _block(diff, "diff"))
        content = _text(tool_input.get("content"))
        size = plural(len(content.splitlines()), "line")
        return (*tool_line(name, tool_input, cwd, width, note=size), _block(content, None))
    shown = [v for v in tool_input.values() if v not in (None, "", [], {})]
    line = tool_line(name, tool_input, cwd, width)
    if len(shown) <= 1 and all(isinstance(v, str) and "\n" not in v for v in shown):
        return (*line, None)  # the line says it all
    text = json.dumps(tool_input, ensure_ascii=False, indent=2, default=str)
    return (*line, _block(text, None))


def _block(text: str, language: str | None) -> tuple[str, str] | None:
    """A code block of ``text``, cut to a prompt's size with a visible marker."""
    text = text.rstrip("\n")  # a file's final newline is no line of its own
    if not text.strip():
        return None
    shown = limit_lines(text, DETAIL_LINES, DETAIL_BYTES)
    body, html = code(shown.text, language)
    if shown.truncated:
        note = marker(shown, attached=False)
        return f"{body}\n{note}", f"{html}<p><i>{esc(note)}</i></p>"
    return body, html


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
