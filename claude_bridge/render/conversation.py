"""The conversation itself: the user's prompts, Claude's replies (streamed or final), subagents.

Stream vs. Stop: MessageDisplay streams Claude's text into one message edited in place, and the
Stop that ends the turn carries the same text again as ``last_assistant_message``. When delivery
says a stream showed this turn's text (``ctx.stream_anchor``), the Stop posts nothing if the
stream already shows exactly that text, and otherwise edits the streamed message to the final
reply, so a lost or coalesced last chunk still ends up correct and the reply is never shown twice.
"""

from __future__ import annotations

from claude_bridge.events.catalogue import (
    MESSAGE_DISPLAY,
    STOP,
    SUBAGENT_START,
    SUBAGENT_STOP,
    USER_PROMPT_SUBMIT,
)
from claude_bridge.events.models import (
    MessageDisplay,
    Stop,
    SubagentStart,
    SubagentStop,
    UserPromptSubmit,
)
from claude_bridge.render.blocks import Frame, long_text
from claude_bridge.render.content import Env, file_message, message, speaker
from claude_bridge.render.markdown import markdown_to_html, markdown_to_text
from claude_bridge.render.messages import PROMPT_BY, Attachment, OutboundMessage
from claude_bridge.render.registry import renders
from claude_bridge.render.text import esc, one_line, shorten
from claude_bridge.render.trim import content_size

_REPLY = Frame(style="markdown", msgtype="m.text")


@renders(USER_PROMPT_SUBMIT)
def render_user_prompt_submit(event: UserPromptSubmit, env: Env) -> list[OutboundMessage]:
    prompt = event.prompt
    out: list[OutboundMessage] = []
    if prompt.strip():
        # m.text with a lead-in and a quote: on a phone it reads as "someone typed this", and the
        # lead-in says who, since it is posted by Claude's ghost.
        by = env.ctx.extra.get(PROMPT_BY)
        frame = Frame(
            # A prompt the bridge typed into a runner session for someone says who.
            lead_body=f"🧑‍💻 {by}:" if by else "🧑‍💻 Prompt:",
            lead_html=f"🧑‍💻 <b>{esc(by)}</b>:" if by else "🧑‍💻 <b>Prompt</b>",
            style="quote",
            msgtype="m.text",
        )
        out += long_text(env, prompt, frame, attach_as="prompt.md", limited=False)
    name = room_name(env, prompt)
    if env.ctx.title is None and name:
        out.append(OutboundMessage(content={"name": name}, event_type="m.room.name", state_key=""))
    return out


def room_name(env: Env, prompt: str) -> str:
    """``<first prompt> · <project>``, or ``""`` when the prompt makes a poor title (empty, or a
    bare slash command such as ``/clear``). What the session is about leads, since a phone's room
    list shows only the start of a name; the project follows (it is also the room's space)."""
    words = one_line(prompt, 2 * env.opts.room_name_length)
    if not words or (words.startswith("/") and " " not in words):
        return ""
    limit = env.opts.room_name_length
    project = one_line(env.ctx.project, limit // 3)
    suffix = f" · {project}" if project else ""
    return shorten(words, max(limit - len(suffix), 1)) + suffix


@renders(STOP)
def render_stop(event: Stop, env: Env) -> list[OutboundMessage]:
    text = event.last_assistant_message or ""
    if not text.strip():
        return []
    sender, displayname = speaker(event)
    # stop_hook_active (a Stop hook made Claude continue) is still a reply worth showing.
    anchor = env.ctx.stream_anchor if not isinstance(event, SubagentStop) else None
    if anchor is None:
        return long_text(
            env,
            text,
            _REPLY,
            attach_as="reply.md",
            limited=False,
            sender=sender,
            sender_displayname=displayname,
        )
    if (env.ctx.stream_text or "").strip() != text.strip():
        return long_text(env, text, _REPLY, attach_as="reply.md", limited=False, replaces=anchor)
    # Already streamed as is. A stream is edited in place and never gets an attachment, so if it
    # had to be cut the full reply is attached now.
    full = message(markdown_to_text(text), markdown_to_html(text), msgtype="m.text")
    if content_size(full) <= env.budget(edit=True):
        return []
    data = text.encode("utf-8")
    return [
        OutboundMessage(
            content=file_message("reply.md", len(data)),
            attachment=Attachment(data, "reply.md", "text/plain"),
        )
    ]


@renders(SUBAGENT_STOP)
def render_subagent_stop(event: SubagentStop, env: Env) -> list[OutboundMessage]:
    return render_stop(event, env)


@renders(SUBAGENT_START)
def render_subagent_start(event: SubagentStart, env: Env) -> list[OutboundMessage]:
    sender, displayname = speaker(event)
    kind = one_line(event.agent_type or "", 80)
    body = f"🤖 Subagent started ({kind})" if kind else "🤖 Subagent started"
    html = f"🤖 Subagent started (<code>{esc(kind)}</code>)" if kind else None
    return [
        OutboundMessage(content=message(body, html), sender=sender, sender_displayname=displayname)
    ]


@renders(MESSAGE_DISPLAY)
def render_message_display(event: MessageDisplay, env: Env) -> list[OutboundMessage]:
    """One streamed message per ``message_id``: sent on the first chunk, edited on later ones.

    Every edit carries the whole text so far, so delivery may skip any intermediate edit.
    """
    text = env.ctx.stream_text if env.ctx.stream_text is not None else event.delta
    if not text.strip():
        text = "…"
    anchor = f"stream:{event.message_id}" if event.message_id else None
    first = event.index == 0 or anchor is None
    return long_text(
        env,
        text,
        _REPLY,
        attach_as=None,
        limited=False,
        edit=True,  # Same size budget for every chunk, so the text never shrinks mid-stream.
        anchor=anchor if first else None,
        replaces=None if first else anchor,
    )
