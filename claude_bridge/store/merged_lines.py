"""The lines of a merged message (``claude_bridge.coalesce``), as the ``merged_message`` table
stores them: a restart or an edit of one line re-sends the whole message from here."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Line:
    hook_event: int
    part: int
    anchor: str | None
    body: str
    html: str


def dump_lines(lines: list[Line]) -> str:
    return json.dumps([[x.hook_event, x.part, x.anchor, x.body, x.html] for x in lines])


def load_lines(text: str) -> list[Line]:
    return [Line(int(e), int(p), a, b, h) for e, p, a, b, h in json.loads(text)]
