"""Small text helpers shared by the renderers: cleaning, escaping, shortening."""

from __future__ import annotations

import html
import re

# Lone surrogates cannot be encoded as UTF-8 (json.dumps(...).encode() would raise) and NUL is
# refused by Postgres-backed homeservers; other C0 controls except tab/newline are terminal
# noise. All are replaced so every string we emit is sendable.
_UNSENDABLE = re.compile(r"[\ud800-\udfff\x00-\x08\x0b-\x1f\x7f]")
# CSI/OSC escape sequences from coloured terminal output.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_WS = re.compile(r"\s+")

ELLIPSIS = "…"


def clean(value: str) -> str:
    """Make ``value`` encodable and free of control characters (tabs and newlines stay).

    Terminal escape sequences are dropped rather than mangled, and a carriage return becomes a
    newline so progress-bar output stays readable.
    """
    value = _ANSI.sub("", value.replace("\r\n", "\n"))
    return _UNSENDABLE.sub(_replace_unsendable, value)


def _replace_unsendable(match: re.Match[str]) -> str:
    ch = match.group(0)
    return "\n" if ch == "\r" else "\ufffd"


def esc(value: str) -> str:
    """HTML-escape text for ``formatted_body`` (quotes too: text may land in attributes)."""
    return html.escape(value, quote=True)


def one_line(value: str, limit: int) -> str:
    """Collapse whitespace to single spaces and cut to ``limit`` characters with an ellipsis."""
    flat = _WS.sub(" ", value).strip()
    return shorten(flat, limit)


def first_line(value: str, limit: int) -> str:
    """The first non-empty line, shortened; an ellipsis tells that more lines followed."""
    lines = [line for line in value.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    head = one_line(lines[0], limit)
    if len(lines) > 1 and not head.endswith(ELLIPSIS):
        head = shorten(head + " " + ELLIPSIS, limit)
    return head


def shorten(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    return value[: max(0, limit - 1)].rstrip() + ELLIPSIS


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def quote_lines(value: str) -> str:
    """Prefix each line with ``> `` (plain-text body of a quoted block)."""
    return "\n".join("> " + line if line else ">" for line in value.split("\n"))
