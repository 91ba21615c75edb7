"""Markdown → Matrix HTML (and the plain ``body``) for Claude's replies and the user's prompts.

Claude's output is untrusted text: raw HTML is escaped (``html: False``), links are kept only for
http/https/mailto, and images become plain links so a reply can never make clients fetch a
remote URL.

Output uses only the tags Element X keeps (see ``tests/unit/render/test_render_clients.py`` for
its sanitizer's allow-list and where it comes from), which are also in the Matrix spec's
``formatted_body`` list: headings become bold paragraphs, a thematic break a line of dashes, and
tables aligned monospace or a list (``tables.py``). Element Web and nheko show them the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.rules_core import StateCore
from markdown_it.token import Token

from claude_bridge.render.plaintext import RULE, TABLE_TOKEN, inline_text, tokens_to_text
from claude_bridge.render.tables import Align, Cell, Table, table_html
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


def _tag(html: str) -> Any:
    def render(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
        return html

    return render


def _table(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    table = tokens[idx].meta.get("table")
    return table_html(table) if isinstance(table, Table) else ""


def _align(style: object) -> Align:
    text = str(style or "")
    return "right" if "right" in text else "center" if "center" in text else "left"


def _html(md: MarkdownIt) -> RendererHTML:
    """The parser's renderer, with the render rules set in ``_build``."""
    if not isinstance(md.renderer, RendererHTML):
        raise TypeError(f"not an HTML renderer: {md.renderer!r}")
    return md.renderer


def _collect_tables(state: StateCore) -> None:
    """Replace each table's tokens with one ``TABLE_TOKEN`` holding its cells (see tables.py)."""
    out: list[Token] = []
    tokens = state.tokens
    i = 0
    while i < len(tokens):
        if tokens[i].type != "table_open":
            out.append(tokens[i])
            i += 1
            continue
        rows: list[list[Cell]] = []
        align: list[Align] = []
        j = i + 1
        while j < len(tokens) and tokens[j].type != "table_close":
            tok = tokens[j]
            if tok.type == "tr_open":
                rows.append([])
            elif tok.type == "th_open":
                align.append(_align(tok.attrGet("style")))
            elif tok.type == "inline" and rows:
                children = tok.children or []
                html = _html(state.md).renderInline(children, state.md.options, state.env)
                rows[-1].append(Cell(inline_text(children, code_marks=False), html))
            j += 1
        if rows:
            n = len(rows[0])
            empty = Cell("", "")
            body = tuple(tuple((r + [empty] * n)[:n]) for r in rows[1:])
            table = Token(TABLE_TOKEN, "", 0)
            table.block, table.map, table.level = True, tokens[i].map, tokens[i].level
            table.meta = {"table": Table(tuple(rows[0]), body, tuple(align))}
            out.append(table)
        i = j + 1
    state.tokens = out


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
    # Element X keeps no <h1>…<h6> and no <hr>: bold paragraphs and a line read the same anywhere.
    md.add_render_rule("heading_open", _tag("<p><strong>"))
    md.add_render_rule("heading_close", _tag("</strong></p>\n"))
    md.add_render_rule("hr", _tag(f"<p>{RULE}</p>\n"))
    md.add_render_rule(TABLE_TOKEN, _table)
    md.core.ruler.push("collect_tables", _collect_tables)
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


def markdown_to_text(source: str) -> str:
    """Markdown as the plain text of a ``body`` (see plaintext.py)."""
    return tokens_to_text(_MD.parse(source))
