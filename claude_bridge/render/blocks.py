"""Messages carrying a long text (output, diff, reply): fitted to size, full text attached.

A renderer describes the frame (lead line, tail line, code block or Markdown) and this module
cuts the text so the whole content fits, adds the visible marker, and emits the full text as an
``m.file`` next to it when something was cut.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from claude_bridge.render.content import Env, file_message, message
from claude_bridge.render.markdown import markdown_to_html, markdown_to_text
from claude_bridge.render.messages import Attachment, OutboundMessage
from claude_bridge.render.text import esc, quote_lines
from claude_bridge.render.trim import Cut, fit, limit_lines, marker

_BLANK_END = re.compile(r"(?:\n[ \t]*)+\Z")


@dataclass(frozen=True)
class Frame:
    """Everything of a long-text message except the text itself."""

    lead_body: str = ""
    lead_html: str = ""
    tail_body: str = ""
    tail_html: str = ""
    style: Literal["code", "markdown", "quote", "plain"] = "code"
    """How the text is shown: a code block, rendered Markdown, Markdown in a quote, or lines."""
    language: str | None = None
    """Language of a code block (syntax highlighting in clients)."""
    msgtype: str = "m.notice"


def code(text: str, language: str | None) -> tuple[str, str]:
    """(body, formatted_body) of a fenced code block; a trailing blank line would show as one."""
    text = _BLANK_END.sub("", text)
    fence = "````" if "```" in text else "```"
    body = f"{fence}{language or ''}\n{text}\n{fence}"
    cls = f' class="language-{esc(language)}"' if language else ""
    return body, f"<pre><code{cls}>{esc(text)}</code></pre>"


def _builder(frame: Frame, attached: bool) -> Callable[[Cut], dict[str, Any]]:
    def build(c: Cut) -> dict[str, Any]:
        if frame.style == "markdown":
            body, html = markdown_to_text(c.text), markdown_to_html(c.text)
        elif frame.style == "quote":
            quoted = quote_lines(markdown_to_text(c.text))
            body, html = quoted, f"<blockquote>{markdown_to_html(c.text)}</blockquote>"
        elif frame.style == "plain":
            plain = _BLANK_END.sub("", c.text)
            body, html = plain, f"<p>{esc(plain).replace(chr(10), '<br>')}</p>"
        else:
            body, html = code(c.text, frame.language)
        bodies = [frame.lead_body, body]
        htmls = [f"<p>{frame.lead_html}</p>" if frame.lead_html else "", html]
        if c.truncated:
            note = marker(c, attached)
            bodies.append(note)
            htmls.append(f"<p><i>{esc(note)}</i></p>")
        if frame.tail_body:
            bodies.append(frame.tail_body)
            htmls.append(f"<p>{frame.tail_html or esc(frame.tail_body)}</p>")
        return message(
            "\n".join(b for b in bodies if b),
            "".join(htmls),
            msgtype=frame.msgtype,
        )

    return build


def long_text(
    env: Env,
    text: str,
    frame: Frame,
    *,
    attach_as: str | None,
    limited: bool = True,
    edit: bool = False,
    **routing: Any,
) -> list[OutboundMessage]:
    """The message (and its attachment, if text was cut) for ``text`` in ``frame``.

    ``limited`` applies the inline line/byte limits (tool output); otherwise only the event size
    budget cuts (replies). An ``edit`` (implied by ``replaces``) gets half the budget. ``routing``
    are OutboundMessage fields: anchor, thread_root, replaces, sender…; the attachment message
    shares the thread and sender but never the anchor or the edit.
    """
    edit = edit or routing.get("replaces") is not None
    max_chars = None
    if limited:
        max_chars = len(
            limit_lines(text, env.opts.max_inline_lines, env.opts.inline_output_bytes).text
        )
    attach = attach_as is not None and env.opts.attach_full_output
    content, shown = fit(text, _builder(frame, attach), env.budget(edit=edit), max_chars)
    first = OutboundMessage(content=content, **routing)
    if not shown.truncated or not attach or attach_as is None:
        return [first]
    data = text.encode("utf-8")
    file_routing = {k: v for k, v in routing.items() if k not in ("anchor", "replaces")}
    return [
        first,
        OutboundMessage(
            content=file_message(attach_as, len(data)),
            attachment=Attachment(data, attach_as, "text/plain"),
            **file_routing,
        ),
    ]
