"""Typed identifiers and the mapping from Claude Code session ids to Matrix localparts."""

from __future__ import annotations

import re
import string
from typing import NewType

SessionID = NewType("SessionID", str)
"""A Claude Code ``session_id`` exactly as the CLI sends it."""

ThreadID = NewType("ThreadID", str)
"""A session id made safe for a Matrix localpart; names the ghost and the alias."""

HookEventID = NewType("HookEventID", int)
"""Primary key of a persisted hook event (the outbound queue)."""

IDEMPOTENCY_HEADER = "Idempotency-Key"
"""A client's name for one request, the same on every retry: hook events (the shim) and API posts."""
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# Matrix localparts may hold a-z 0-9 . _ = - /; "=" is our escape and "/" confuses URLs.
_LOCALPART_SAFE = frozenset(string.ascii_lowercase + string.digits + "._-")
MAX_SESSION_ID_LENGTH = 128
SUBAGENT_MARK = "-agent"
"""A subagent's ghost is the thread's ghost + ``-agent-<id>`` (render/content.py). No thread id
contains this mark, so no session's ghost is ever another session's subagent ghost."""
_ESCAPED_MARK = "=2d" + SUBAGENT_MARK[1:]


def thread_id_for(session_id: str) -> ThreadID:
    """Lowercase the session id and escape what a localpart cannot hold as ``=xx``.

    Session ids are UUIDs in practice, so this is the identity for them; anything else still
    yields a valid, deterministic, reversible-enough localpart. The ``-`` of a ``-agent`` in it
    is escaped too (``=2dagent``): a session named ``<S>-agent-<id>`` must not get the ghost of
    S's subagent ``<id>``.
    """
    out: list[str] = []
    for ch in session_id.lower():
        if ch in _LOCALPART_SAFE:
            out.append(ch)
        else:
            out.extend(f"={b:02x}" for b in ch.encode("utf-8"))
    return ThreadID("".join(out).replace(SUBAGENT_MARK, _ESCAPED_MARK))
