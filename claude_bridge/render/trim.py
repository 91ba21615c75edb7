"""Keeping content under the Matrix event size limit, visibly.

Sizes are measured the way the homeserver counts them: the content as UTF-8 JSON. Text is cut
on its *source* (Markdown or plain output) and re-rendered, so HTML is never cut mid-tag.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from claude_bridge.render.text import ELLIPSIS, plural

MATRIX_EVENT_LIMIT = 65_536


def content_size(content: dict[str, Any]) -> int:
    return len(json.dumps(content, ensure_ascii=False).encode("utf-8", errors="replace"))


@dataclass(frozen=True)
class Cut:
    """A prefix of some text and how much of the text it leaves out."""

    text: str
    omitted_lines: int = 0
    """Lines left out, counting a line cut in the middle."""
    omitted_chars: int = 0

    @property
    def truncated(self) -> bool:
        return self.omitted_chars > 0


def cut(text: str, max_chars: int) -> Cut:
    """The longest prefix of at most ``max_chars`` characters, ending at a line end if it can."""
    if len(text) <= max_chars:
        return Cut(text)
    head = text[: max(0, max_chars)]
    newline = head.rfind("\n")
    # Cut at a line end unless the prefix already ends at one, or cutting there would throw
    # away most of what fits (one huge line).
    if text[len(head)] != "\n" and newline >= len(head) // 2:
        head = head[:newline]
    rest = text[len(head) :].strip("\n")
    if not rest:  # Only trailing newlines left out: nothing worth a marker.
        return Cut(head)
    return Cut(head, omitted_lines=rest.count("\n") + 1, omitted_chars=len(text) - len(head))


def limit_lines(text: str, max_lines: int, max_bytes: int) -> Cut:
    """Cut ``text`` to ``max_lines`` lines and ``max_bytes`` UTF-8 bytes."""
    lines = text.split("\n")
    head = "\n".join(lines[:max_lines]) if len(lines) > max_lines else text
    encoded = head.encode("utf-8")
    if len(encoded) > max_bytes:
        head = encoded[:max_bytes].decode("utf-8", errors="ignore")
    return cut(text, len(head)) if len(head) < len(text) else Cut(text)


def marker(c: Cut, attached: bool) -> str:
    """The visible note that replaces what was cut."""
    if c.omitted_lines > 1:
        more = plural(c.omitted_lines, "more line")
    else:  # Part of one (long) line: lines would say "1 more line" for 50 KiB.
        more = plural(c.omitted_chars, "more character")
    note = f"{ELLIPSIS} (truncated, {more}"
    return note + (" — full text attached)" if attached else ")")


def fit(
    text: str,
    build: Callable[[Cut], dict[str, Any]],
    budget: int,
    max_chars: int | None = None,
) -> tuple[dict[str, Any], Cut]:
    """Build content from the longest prefix of ``text`` whose content fits ``budget`` bytes.

    ``build`` gets the :class:`Cut` (and shows the marker when it is truncated). ``max_chars``
    caps the prefix beforehand (the line/byte limits for inline output). Content size grows with
    the prefix length, so a search over the length finds the cut in a few builds.
    """
    first = cut(text, len(text) if max_chars is None else max_chars)
    if len(first.text) <= budget:  # Otherwise it cannot fit: skip rendering it whole.
        content = build(first)
        if content_size(content) <= budget:
            return content, first
    # Each character takes at least one byte of the body alone: longer prefixes cannot fit.
    lo, hi = 0, min(len(first.text), budget)
    best: tuple[dict[str, Any], Cut] | None = None
    probe = hi
    # Bisection, but probing where the size/length ratio of the last build says the budget is
    # reached: a few renders instead of ~17. Stop within 1% of the longest fitting prefix.
    for _ in range(64):  # Converges in far fewer; the bound only makes termination obvious.
        if lo > hi or (best is not None and hi - lo <= max(64, hi // 100)):
            break
        mid = probe if lo <= probe <= hi else (lo + hi) // 2
        candidate = cut(text, mid)
        content = build(candidate)
        size = content_size(content)
        if size <= budget:
            best = (content, candidate)
            lo = mid + 1
        else:
            hi = mid - 1
        probe = int(mid * budget / max(size, 1) * 0.99)
    if best is None:  # Even an empty prefix is too big: the frame is; limit() will act.
        empty = cut(text, 0)
        return build(empty), empty
    return best


def limit(content: dict[str, Any], budget: int) -> dict[str, Any]:
    """Last resort for content still over ``budget``: drop HTML, then shorten every string.

    Renderers fit their text themselves; this guards against anything they did not foresee so an
    event is never refused by the homeserver.
    """
    if content_size(content) <= budget:
        return content
    content = dict(content)
    if "formatted_body" in content:
        content.pop("formatted_body")
        content.pop("format", None)
    while content_size(content) > budget:
        key, longest = _longest_string(content)
        if key is None or len(longest) <= 1:
            break
        content[key] = longest[: len(longest) // 2] + ELLIPSIS
    return content


def _longest_string(content: dict[str, Any]) -> tuple[str | None, str]:
    best_key: str | None = None
    best = ""
    for key, value in content.items():
        if isinstance(value, str) and len(value) > len(best):
            best_key, best = key, value
    return best_key, best
