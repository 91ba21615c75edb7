"""Markdown → Matrix HTML for Claude's replies and the user's prompts.

Claude's output is untrusted text: raw HTML is escaped (``html: False``), links are kept only for
http/https/mailto, and images become plain links so a reply can never make clients fetch a
remote URL. Output uses only tags in the Matrix ``formatted_body`` allow-list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

from claude_bridge.render.text import esc

_SAFE_SCHEMES = ("http://", "https://", "mailto:")


def _validate_link(url: str) -> bool:
    return url.strip().lower().startswith(_SAFE_SCHEMES)


def _image_as_link(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    alt = "".join(child.content for child in token.children or ()) or src
    return f'<a href="{esc(src)}">🖼️ {esc(alt)}</a>'


def _strikethrough_open(
    self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any
) -> str:
    # markdown-it emits <s>; <del> is the tag the Matrix spec has always allowed.
    return "<del>"


def _strikethrough_close(
    self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any
) -> str:
    return "</del>"


def _drop_styles(state: Any) -> None:
    # Table alignment comes as style="text-align:…", an attribute Matrix clients strip anyway.
    stack = list(state.tokens)
    while stack:
        token = stack.pop()
        if token.attrs and "style" in token.attrs:
            del token.attrs["style"]
        stack.extend(token.children or ())


def _build() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.validateLink = _validate_link  # type: ignore[method-assign]
    md.add_render_rule("image", _image_as_link)
    md.add_render_rule("s_open", _strikethrough_open)
    md.add_render_rule("s_close", _strikethrough_close)
    md.core.ruler.push("drop_styles", _drop_styles)
    return md


_MD = _build()


def markdown_to_html(source: str) -> str:
    """Render Markdown to HTML; a lone paragraph is unwrapped so short replies stay compact."""
    rendered = _MD.render(source).strip()
    if (
        rendered.startswith("<p>")
        and rendered.endswith("</p>")
        and rendered.count("<p>") == 1
        and "\n" not in rendered
    ):
        return rendered[3:-4]
    return rendered
