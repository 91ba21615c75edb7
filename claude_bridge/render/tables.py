"""Markdown tables laid out so that every client can read them.

Element X shows no HTML table (element-x-android#1551): its sanitizer drops ``<table>`` and its
rows but keeps their text, so the cells run together into one line. A table is therefore sent as
aligned monospace in ``<pre>`` when it is narrow enough for a phone, and as a list (one item per
row, the first column leading) when it is not. The plain ``body`` gets the same text.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal

from claude_bridge.render.text import esc

TABLE_WIDTH = 60
"""Widest aligned table, in monospace columns; a wider one becomes a list. About what a phone
shows of a code block without wrapping, in landscape."""

Align = Literal["left", "right", "center"]


@dataclass(frozen=True)
class Cell:
    text: str
    """The cell as plain text (the aligned layout)."""
    html: str
    """The cell as inline HTML (the list layout keeps its emphasis, code and links)."""


@dataclass(frozen=True)
class Table:
    header: tuple[Cell, ...]
    rows: tuple[tuple[Cell, ...], ...]
    align: tuple[Align, ...]


def columns(text: str) -> int:
    """How many monospace columns ``text`` takes: wide (CJK, most emoji) characters take two,
    combining marks and variation selectors none."""
    total = 0
    for ch in text:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        total += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return total


def _pad(text: str, width: int, align: Align) -> str:
    gap = width - columns(text)
    if align == "right":
        return " " * gap + text
    if align == "center":
        return " " * (gap // 2) + text + " " * (gap - gap // 2)
    return text + " " * gap


def grid(table: Table) -> str | None:
    """The table as aligned lines, or ``None`` when it is wider than :data:`TABLE_WIDTH`."""
    n = len(table.header)
    rows = [[c.text for c in table.header], *([c.text for c in r] for r in table.rows)]
    widths = [max(max(columns(r[i]) for r in rows), 1) for i in range(n)]
    if sum(widths) + 3 * (n - 1) > TABLE_WIDTH:
        return None
    align = [table.align[i] if i < len(table.align) else "left" for i in range(n)]

    def line(cells: list[str]) -> str:
        return " | ".join(_pad(c, widths[i], align[i]) for i, c in enumerate(cells)).rstrip()

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([line(rows[0]), rule, *(line(r) for r in rows[1:])])


def _items(table: Table) -> list[tuple[str, str]]:
    """(text, html) of each row as a list item: ``first — Header: value · Header: value``."""
    items = []
    for row in table.rows:
        lead, rest = row[0], list(zip(table.header[1:], row[1:], strict=True))
        parts = [(h, c) for h, c in rest if c.text]
        text = " · ".join(f"{h.text}: {c.text}" if h.text else c.text for h, c in parts)
        html = " · ".join(f"{esc(h.text)}: {c.html}" if h.text else c.html for h, c in parts)
        if lead.text:
            text = f"{lead.text} — {text}" if text else lead.text
            first = f"<strong>{lead.html}</strong>"
            html = f"{first} — {html}" if html else first
        items.append((text, html))
    return items


def table_text(table: Table) -> str:
    """The table in a plain-text ``body``."""
    aligned = grid(table)
    if aligned is not None:
        return aligned
    return "\n".join(f"• {text}" for text, _ in _items(table))


def table_html(table: Table) -> str:
    """The table in a ``formatted_body``: only tags every client keeps."""
    aligned = grid(table)
    if aligned is not None:
        return f"<pre><code>{esc(aligned)}</code></pre>\n"
    return "<ul>\n" + "".join(f"<li>{html}</li>\n" for _, html in _items(table)) + "</ul>\n"
