"""A thread's history as people read it: what Claude Code did (from the stored hook events) and
what people wrote in the room (from the stored Matrix events), merged in time order and paginated.

Read-only; used by the REST API (and so the MCP tools) and by ``export --format markdown``.
Events the ghost sent for a hook event are recorded in ``sent_event``; those are left out of the
Matrix side so nothing appears twice.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from mautrix.util.async_db import Database

from claude_bridge.config.sections.mirror import RedactConfig
from claude_bridge.events.catalogue import (
    NOT_IN_HISTORY,
    NOTIFICATION,
    PERMISSION_REQUEST,
    POST_TOOL_USE_FAILURE,
    PRE_TOOL_USE,
    SESSION_END,
    SESSION_START,
    STOP,
    STOP_FAILURE,
    SUBAGENT_START,
    SUBAGENT_STOP,
    USER_PROMPT_SUBMIT,
    kind_of,
)
from claude_bridge.render.scrub import Scrubber, scrubber_for
from claude_bridge.store import HookEventLog, MatrixEventStore, SentEvents, Thread, ThreadStore

MAX_TEXT = 4000
_END = 2**62  # "after everything" for cursor comparisons


@dataclass(frozen=True)
class ThreadFilter:
    project: str | None = None
    status: str | None = None
    text: str | None = None
    limit: int = 50
    offset: int = 0
    owner: str | None = None
    """Only the threads this hook token owns (None: every thread)."""


@dataclass
class Message:
    cursor: str
    ts: int
    role: str  # user (the terminal's prompt), assistant, tool, system, or matrix (the room)
    sender: str
    text: str
    hook_event: str | None = None
    hook_event_id: int | None = None
    matrix_event_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _like(value: str) -> str:
    escaped = value.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def encode_cursor(ts: int, source: str, key: str | int) -> str:
    return base64.urlsafe_b64encode(f"{ts}.{source}.{key}".encode()).decode().rstrip("=")


def _bounded(digits: str) -> bool:
    """ASCII digits of a number the stores can compare (BIGINT): 0 … ``_END``."""
    return digits.isascii() and digits.isdigit() and len(digits) <= 19 and int(digits) <= _END


def decode_cursor(cursor: str) -> tuple[int, str, str]:
    """Raises ValueError for anything this module did not make (an API 400, never a 500: a
    number past BIGINT, or a NUL, would make the database query itself fail)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, source, key = raw.split(".", 2)
        if source not in ("h", "m") or not _bounded(ts) or "\x00" in key:
            raise ValueError(source)
        if source == "h" and not _bounded(key):
            raise ValueError(key)
        return int(ts), source, key
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"not a cursor from this API: {cursor[:100]!r}") from None


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def describe_hook_event(name: str, payload: str) -> tuple[str, str]:
    """(role, text) of a stored hook event, in a line a person (or Claude) can read."""
    try:
        data = json.loads(payload)
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    if data.get("pruned"):
        return "system", f"{name} (payload pruned by retention)"

    def get(key: str) -> str:
        value = data.get(key)
        return value if isinstance(value, str) else ""

    kind = kind_of(name)
    if kind is USER_PROMPT_SUBMIT:
        return "user", get("prompt")
    if kind in (STOP, SUBAGENT_STOP, STOP_FAILURE):
        return "assistant", get("last_assistant_message") or f"({name})"
    if kind in (PRE_TOOL_USE, PERMISSION_REQUEST, POST_TOOL_USE_FAILURE):
        raw_input = data.get("tool_input")
        tool_input: dict[str, Any] = raw_input if isinstance(raw_input, dict) else {}
        detail = next(
            (
                str(tool_input[k])
                for k in ("command", "file_path", "pattern", "url", "description")
                if isinstance(tool_input.get(k), str)
            ),
            "",
        )
        verb = {PERMISSION_REQUEST: "asks to use", POST_TOOL_USE_FAILURE: "failed:"}.get(kind, "")
        text = " ".join(p for p in (verb, get("tool_name") or "a tool", detail) if p)
        return "tool", text
    if kind is NOTIFICATION:
        return "system", get("message") or "notification"
    if kind is SESSION_START:
        return "system", f"session started ({get('source') or 'startup'})"
    if kind is SESSION_END:
        return "system", f"session ended ({get('reason') or 'other'})"
    if kind is SUBAGENT_START:
        return "system", f"subagent {get('agent_type') or get('agent_id')} started"
    return "system", name


class ThreadHistory:
    def __init__(self, db: Database, scrub: Scrubber | None = None) -> None:
        self.db = db
        self.threads = ThreadStore(db)
        self.log = HookEventLog(db)
        self.sent = SentEvents(db)
        self.matrix = MatrixEventStore(db)
        # Raw hook payloads are scrubbed before _clip cuts them: a key cut in half would be too
        # short for its pattern when the API's serialiser scrubs the answer.
        self.scrub = scrub or scrubber_for(RedactConfig())

    async def list_threads(self, f: ThreadFilter) -> list[Thread]:
        return await self.threads.search(
            owner=f.owner,
            project_like=_like(f.project) if f.project else None,
            status=f.status or None,
            text_like=_like(f.text) if f.text else None,
            limit=f.limit,
            offset=f.offset,
        )

    async def messages(
        self, thread: Thread, *, limit: int = 50, before: str | None = None
    ) -> tuple[list[Message], str | None]:
        """Up to ``limit`` messages older than ``before`` (newest page by default), oldest first,
        and the cursor of the page before it (``None`` at the beginning)."""
        ts, source, key = decode_cursor(before) if before else (_END, "m", "")
        hook_key = int(key) if source == "h" else _END
        hooks = await self._hook_messages(thread, ts, hook_key, limit + 1)
        matrix = await self._matrix_messages(thread, ts, key if source == "m" else "", limit + 1)
        # Both lists are newest first; at equal times hook events sort before Matrix events.
        merged: list[Message] = []
        while (hooks or matrix) and len(merged) < limit + 1:
            if not matrix or (hooks and hooks[0].ts > matrix[0].ts):
                merged.append(hooks.pop(0))
            else:
                merged.append(matrix.pop(0))
        more = len(merged) > limit
        page = merged[:limit]
        return list(reversed(page)), (page[-1].cursor if more and page else None)

    async def _hook_messages(self, thread: Thread, ts: int, key: int, limit: int) -> list[Message]:
        rows = await self.log.history_before(thread.id, NOT_IN_HISTORY, ts, key, limit)
        sent = await self.sent.sent_event_ids([r["id"] for r in rows])
        out = []
        for r in rows:
            role, text = describe_hook_event(r["event_name"], r["payload"])
            out.append(
                Message(
                    cursor=encode_cursor(r["received_at"], "h", r["id"]),
                    ts=r["received_at"],
                    role=role,
                    sender=thread.ghost_mxid,
                    text=_clip(self.scrub.text(text)),
                    hook_event=r["event_name"],
                    hook_event_id=r["id"],
                    matrix_event_ids=sent.get(r["id"], []),
                )
            )
        return out

    async def _matrix_messages(
        self, thread: Thread, ts: int, key: str, limit: int
    ) -> list[Message]:
        if not thread.room_id:
            return []
        rows = await self.matrix.messages_before(thread.room_id, ts, key, limit)
        out = []
        for r in rows:
            content = json.loads(r["event"]).get("content") or {}
            relation = content.get("m.relates_to") or {}
            body = content["body"] if isinstance(content.get("body"), str) else "(redacted)"
            if relation.get("rel_type") == "m.replace":
                new = content.get("m.new_content") or {}
                body = "(edited) " + str(new.get("body", body))
            out.append(
                Message(
                    cursor=encode_cursor(r["received_at"], "m", r["event_id"]),
                    ts=r["received_at"],
                    role="matrix",
                    sender=r["sender"],
                    text=_clip(body),
                    matrix_event_ids=[r["event_id"]],
                )
            )
        return out
