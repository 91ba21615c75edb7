"""Typed identifiers, the mapping from Claude Code session ids to Matrix localparts, and
``MatrixNames``: the one place that knows how the bridge's Matrix ids are formed and read."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
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
"""A subagent's ghost is the thread's ghost + ``-agent-<id>`` (``MatrixNames.ghost``). No thread
id contains this mark, so no session's ghost is ever another session's subagent ghost."""
_ESCAPED_MARK = "=2d" + SUBAGENT_MARK[1:]
MAX_AGENT_FRAGMENT = 48
"""Agent ids are hex in practice; the cap keeps @claude-<thread>-agent-<id> far below 255 bytes."""


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


def subagent_speaker(agent_id: str) -> str:
    """What a subagent's messages carry as their speaker: ``agent-<id>``, the suffix its ghost
    adds to the thread's (``MatrixNames.ghost``); a valid lowercase localpart fragment."""
    fragment = thread_id_for(agent_id)[:MAX_AGENT_FRAGMENT].strip("=") or "unknown"
    return f"{SUBAGENT_MARK[1:]}-{fragment}"


@dataclass(frozen=True)
class MatrixNames:
    """The Matrix ids the bridge owns, formatted and read back by the same rules: the bot, a ghost
    per thread (``@<ghost_prefix><thread>``) and per subagent of it (``…-agent-<id>``), an alias
    per thread (``#<alias_prefix><thread>``), all on the homeserver's domain. Its registration
    claims exactly these (``namespaces``). Built once from the config (``Config.matrix_names``)."""

    domain: str
    ghost_prefix: str
    alias_prefix: str
    bot_localpart: str

    @property
    def bot(self) -> str:
        return f"@{self.bot_localpart}:{self.domain}"

    def ghost(self, thread_id: str, speaker: str | None = None) -> str:
        """The ghost that speaks for ``thread_id``, or for its subagent ``speaker``."""
        localpart = f"{self.ghost_prefix}{thread_id}" + (f"-{speaker}" if speaker else "")
        return f"@{localpart}:{self.domain}"

    def subagent_ghost(self, thread_id: str, agent_id: str) -> str:
        return self.ghost(thread_id, subagent_speaker(agent_id))

    def alias(self, thread_id: str) -> str:
        return f"#{self.alias_prefix}{thread_id}:{self.domain}"

    def thread_of_ghost(self, user_id: str) -> ThreadID | None:
        """The thread ``user_id`` is the own ghost of, if it is one; None outside the namespace.

        A subagent's ghost names no thread: no thread id holds ``SUBAGENT_MARK``. (A thread stored
        before the mark was escaped holds it, and its own ghost is found.)"""
        rest = self._strip(user_id, self.ghost_prefix)
        return ThreadID(rest) if rest else None

    def thread_of_alias(self, alias: str) -> ThreadID | None:
        """The thread whose alias this is; None for any other alias."""
        rest = self._strip(alias, self.alias_prefix)
        return ThreadID(rest) if rest else None

    def thread_in_reference(self, ref: str) -> str:
        """The thread part of an alias someone typed (``#<alias_prefix><thread>:<server>``, any
        server, the prefix optional); anything else unchanged."""
        if not ref.startswith("#"):
            return ref
        return ref[1:].split(":", 1)[0].removeprefix(self.alias_prefix)

    def is_bridge_user(self, user_id: str) -> bool:
        """The bot or any ghost: users only the bridge can act as (its exclusive namespace)."""
        localpart, _, domain = user_id[1:].partition(":")
        return domain == self.domain and (
            localpart == self.bot_localpart or localpart.startswith(self.ghost_prefix)
        )

    def namespaces(self) -> dict[str, list[dict[str, object]]]:
        """The registration's exclusive namespaces: the ghosts, the bot, the aliases."""
        domain = re.escape(self.domain)
        ghost, alias = re.escape(self.ghost_prefix), re.escape(self.alias_prefix)
        return {
            "users": [
                {"regex": f"@{ghost}.*:{domain}", "exclusive": True},
                {"regex": f"@{re.escape(self.bot_localpart)}:{domain}", "exclusive": True},
            ],
            "aliases": [{"regex": f"#{alias}.*:{domain}", "exclusive": True}],
            "rooms": [],
        }

    def _strip(self, mxid: str, prefix: str) -> str | None:
        """What follows ``prefix`` in the localpart of ``mxid`` (``@`` or ``#``), when it is on our
        domain and has that prefix."""
        localpart, _, domain = mxid[1:].partition(":")
        if domain != self.domain or not localpart.startswith(prefix):
            return None
        return localpart.removeprefix(prefix)
