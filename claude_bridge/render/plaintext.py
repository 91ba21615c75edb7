"""Markdown as plain text, for the ``body`` beside a ``formatted_body``.

Clients show ``body`` where they cannot show HTML: the room list's preview, notifications, reply
quotes, plain-text clients. Markdown source there reads as ``## Fixed: …`` and ``**two**``, so
headings and emphasis lose their markers (strikethrough keeps its ``~~``: struck-out words
mean the opposite of what they say), links show their address after the text, and what
carries meaning stays: list bullets and numbers, quotes, fenced code blocks, inline code in
backticks, tables laid out as in the HTML.
"""

from __future__ import annotations

from collections.abc import Sequence

from markdown_it.token import Token
from markdown_it.tree import SyntaxTreeNode

from claude_bridge.render.tables import Table, table_text

RULE = "———"
"""A thematic break (``---``), in the body and in HTML (Element X drops ``<hr>``)."""
TABLE_TOKEN = "bridge_table"
"""The token a Markdown table is replaced by; its ``meta["table"]`` is a :class:`Table`."""


def inline_text(tokens: Sequence[Token], *, code_marks: bool = True) -> str:
    """The text of an inline token's children; ``code_marks`` keeps backticks around code."""
    out: list[str] = []
    links: list[tuple[str, int]] = []
    for tok in tokens:
        if tok.type in ("text", "html_inline"):
            out.append(tok.content)
        elif tok.type == "code_inline":
            tick = "``" if "`" in tok.content else "`"
            out.append(f"{tick}{tok.content}{tick}" if code_marks else tok.content)
        elif tok.type in ("s_open", "s_close"):  # struck-out text means the opposite: keep it so
            out.append("~~")
        elif tok.type in ("softbreak", "hardbreak"):
            out.append("\n")
        elif tok.type == "link_open":
            links.append((str(tok.attrGet("href") or ""), len(out)))
        elif tok.type == "link_close" and links:
            href, start = links.pop()
            label = "".join(out[start:])
            if href and href not in (label, f"mailto:{label}"):
                out.append(f" ({href})")
        elif tok.type == "image":
            alt = inline_text(tok.children or (), code_marks=code_marks)
            out.append(f"🖼️ {alt} ({tok.attrGet('src') or ''})")
    return "".join(out)


def tokens_to_text(tokens: Sequence[Token]) -> str:
    """The plain text of a parsed Markdown document."""
    return "\n".join(_blocks(SyntaxTreeNode(tokens).children)).strip("\n")


def _blocks(nodes: Sequence[SyntaxTreeNode], *, tight: bool = False) -> list[str]:
    lines: list[str] = []
    for node in nodes:
        block = _block(node)
        if not block:
            continue
        if lines and not tight:
            lines.append("")
        lines.extend(block)
    return lines


def _block(node: SyntaxTreeNode) -> list[str]:
    kind = node.type
    if kind in ("paragraph", "heading"):
        inline = node.children[0].token if node.children else None
        return inline_text(inline.children or ()).split("\n") if inline else []
    if kind in ("bullet_list", "ordered_list"):
        start = node.attrs.get("start", 1)
        number = int(start) if isinstance(start, int | str) and str(start).isdigit() else 1
        lines = []
        for i, item in enumerate(node.children):
            mark = f"{number + i}. " if kind == "ordered_list" else "• "
            inner = _blocks(item.children, tight=True) or [""]
            lines.append(mark + inner[0])
            lines.extend(" " * len(mark) + line if line else "" for line in inner[1:])
        return lines
    if kind == "blockquote":
        return ["> " + line if line else ">" for line in _blocks(node.children)]
    if kind in ("fence", "code_block"):
        code = node.content.rstrip("\n")
        fence = "````" if "```" in code else "```"
        language = node.info.strip().split(" ")[0] if kind == "fence" else ""
        return [fence + language, *code.split("\n"), fence]
    if kind == "hr":
        return [RULE]
    if kind == TABLE_TOKEN:
        table = node.meta.get("table")
        return table_text(table).split("\n") if isinstance(table, Table) else []
    if node.children:
        return _blocks(node.children)
    return node.content.rstrip("\n").split("\n") if node.content else []
