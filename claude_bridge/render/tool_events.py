"""Tool calls: one line in the timeline per call, its output, diff or error under it.

The line is anchored ``tool:<tool_use_id>``; output goes into the ``m.thread`` rooted there (or
the timeline, per ``tool_output``). A failure or denial also edits the line to show ❌/🚫 so the
timeline alone tells which calls went wrong. When PreToolUse is not mirrored, PostToolUse posts the
line itself, so output never appears without saying which call it belongs to.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from claude_bridge.events.catalogue import (
    PERMISSION_DENIED,
    POST_TOOL_BATCH,
    POST_TOOL_USE,
    POST_TOOL_USE_FAILURE,
    PRE_TOOL_USE,
)
from claude_bridge.events.models import (
    HookEvent,
    PostToolBatch,
    PostToolUse,
    PostToolUseFailure,
    PreToolUse,
)
from claude_bridge.render.blocks import Frame, long_text
from claude_bridge.render.content import Env, message, project_dir, speaker
from claude_bridge.render.images import MAX_PICTURES, image_content, left_out, pictures
from claude_bridge.render.messages import Attachment, OutboundMessage
from claude_bridge.render.registry import renders
from claude_bridge.render.text import esc, first_line
from claude_bridge.render.tool_output import tool_output
from claude_bridge.render.tools import attachment_name, display_name, output_text, tool_line


def _tool(event: HookEvent) -> tuple[str, dict[str, Any], str | None]:
    """(tool_name, tool_input, tool_use_id), also for tool events without a model."""
    name = getattr(event, "tool_name", None) or event.extra.get("tool_name")
    tool_input = getattr(event, "tool_input", None) or event.extra.get("tool_input")
    use_id = getattr(event, "tool_use_id", None) or event.extra.get("tool_use_id")
    return (
        name if isinstance(name, str) else "",
        tool_input if isinstance(tool_input, dict) else {},
        use_id if isinstance(use_id, str) and use_id else None,
    )


def _anchor(event: HookEvent) -> str | None:
    use_id = _tool(event)[2]
    return f"tool:{use_id}" if use_id else None


def _line(
    event: HookEvent, env: Env, *, prefix: str = "", note: str = "", edit: bool = False
) -> OutboundMessage:
    name, tool_input, _ = _tool(event)
    cwd = project_dir(event, env)
    body, html = tool_line(
        name, tool_input, cwd, env.opts.tool_line_length, prefix=prefix, note=note
    )
    sender, displayname = speaker(event)
    anchor = _anchor(event)
    return OutboundMessage(
        content=message(body, html),
        sender=sender,
        sender_displayname=displayname,
        anchor=None if edit else anchor,
        replaces=anchor if edit else None,
    )


def _reply(
    event: HookEvent, env: Env, text: str, frame: Frame, kind: str, *, after_line: bool = False
) -> list[OutboundMessage]:
    """The output message under a call's line (thread) or after it (inline).

    ``after_line``: this same event posted the line just before.
    """
    name, tool_input, _ = _tool(event)
    thread = env.opts.tool_output == "thread"
    if not thread and not after_line:
        # Inline: say which call this is, other calls may have come in between.
        cwd = project_dir(event, env)
        body, html = tool_line(name, tool_input, cwd, env.opts.tool_line_length, prefix="↳")
        frame = dataclasses.replace(
            frame,
            lead_body=" ".join(p for p in (body, frame.lead_body) if p),
            lead_html=" ".join(p for p in (html, frame.lead_html) if p),
        )
    sender, displayname = speaker(event)
    return long_text(
        env,
        text,
        frame,
        attach_as=attachment_name(name, tool_input, kind),
        thread_root=_anchor(event) if thread else None,
        sender=sender,
        sender_displayname=displayname,
    )


@renders(PRE_TOOL_USE)
def render_pre_tool_use(event: PreToolUse, env: Env) -> list[OutboundMessage]:
    return [_line(event, env)]


@renders(POST_TOOL_USE)
def render_post_tool_use(event: PostToolUse, env: Env) -> list[OutboundMessage]:
    out = [] if env.opts.enabled(PRE_TOOL_USE.name) else [_line(event, env)]
    if env.opts.tool_output == "off":
        return out
    images = _images(event, env)
    shown = tool_output(event, env)
    image_read = (
        isinstance(event.tool_response, dict) and event.tool_response.get("type") == "image"
    )
    if shown is not None and not (images and image_read):
        # A Read of an image says only "🖼️ image/png, 64×48": the image itself says more.
        text, frame, kind = shown
        out += _reply(event, env, text, frame, kind, after_line=bool(out))
    return out + images


def _images(event: PostToolUse, env: Env) -> list[OutboundMessage]:
    """The images the call returned (a Read of one, an MCP tool's image content), each an
    ``m.image`` under the call's line; delivery uploads them."""
    sender, displayname = speaker(event)
    root = _anchor(event) if env.opts.tool_output == "thread" else None
    out = []
    for picture in pictures(event.tool_name, event.tool_input, event.tool_response):
        content = image_content(picture)
        own_thumbnail = "thumbnail_info" in content["info"]
        attachment = Attachment(picture.data, picture.filename, picture.mimetype, own_thumbnail)
        out.append(
            OutboundMessage(
                content=content,
                sender=sender,
                sender_displayname=displayname,
                thread_root=root,
                attachment=attachment,
            )
        )
    if more := left_out(event.tool_response, len(out)):
        note = f"🖼️ {more} more images of this call not shown (at most {MAX_PICTURES} a call)"
        out.append(
            OutboundMessage(
                content=message(note),
                sender=sender,
                sender_displayname=displayname,
                thread_root=root,
            )
        )
    return out


@renders(POST_TOOL_USE_FAILURE)
def render_post_tool_use_failure(event: PostToolUseFailure, env: Env) -> list[OutboundMessage]:
    error = output_text(event.error).strip()
    interrupted = bool(event.is_interrupt)
    prefix = "⏹️" if interrupted else "❌"
    note = "interrupted" if interrupted else first_line(error, 80) or "failed"
    out = [_line(event, env, prefix=prefix, note=note, edit=env.opts.enabled(PRE_TOOL_USE.name))]
    if env.opts.tool_output == "off" or not error:
        return out
    command = event.tool_input.get("command")
    text = f"$ {command}\n{error}" if event.tool_name == "Bash" and command else error
    what = "interrupted" if interrupted else "failed"
    lead = f"{prefix} {display_name(event.tool_name)} {what}"
    frame = Frame(
        lead_body=lead,
        lead_html=f"{prefix} <b>{esc(lead[len(prefix) + 1 :])}</b>",
        language="console" if event.tool_name == "Bash" else None,
    )
    return out + _reply(event, env, text, frame, "error", after_line=out[0].replaces is None)


@renders(PERMISSION_DENIED)
def render_permission_denied(event: HookEvent, env: Env) -> list[OutboundMessage]:
    reason = event.extra.get("reason")
    note = first_line(reason, 120) if isinstance(reason, str) and reason else "denied"
    edit = _anchor(event) is not None and env.opts.enabled(PRE_TOOL_USE.name)
    return [_line(event, env, prefix="🚫", note=note, edit=edit)]


@renders(POST_TOOL_BATCH)
def render_post_tool_batch(event: PostToolBatch, env: Env) -> list[OutboundMessage]:
    # Each call in the batch was already shown by its PreToolUse/PostToolUse.
    return []
