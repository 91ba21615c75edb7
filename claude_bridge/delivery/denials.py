"""A call denied from Matrix: its tool line is marked 🚫, with who denied it.

Claude Code sends nothing for such a call (no PostToolUseFailure, no PermissionDenied: only the
PostToolBatch that is off by default), so its line would read as if it ran. The call is found by
what identifies it (the PermissionRequest carries no ``tool_use_id``): the thread's latest
PreToolUse before the request with the same agent, tool and input. Its line is edited by
rendering a PermissionDenied for it, the event Claude Code sends when it denies a call itself, so
it reads the same (and a muted thread or a switched-off line shows nothing). The edit holds the
thread's delivery lock: a merged line shares its message with other lines that delivery may be
editing at that moment.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from claude_bridge.delivery.context import ContextReader
from claude_bridge.delivery.merging import Renderer
from claude_bridge.delivery.sending import Sender
from claude_bridge.events.catalogue import PERMISSION_DENIED, PRE_TOOL_USE
from claude_bridge.events.parse import HookInputError, parse_hook_event
from claude_bridge.ids import HookEventID, ThreadID
from claude_bridge.log import get_logger
from claude_bridge.matrix.client import MatrixClient, MatrixError
from claude_bridge.store import HookEventLog, PendingEvent, ThreadStore

log = get_logger("delivery")

CALLS_LOOKED_AT = 50
"""PreToolUse events searched back from a request for its call (parallel calls come in a run)."""


def _call(payload: dict[str, Any]) -> tuple[Any, ...]:
    return (payload.get("agent_id") or "", payload.get("tool_name"), payload.get("tool_input"))


class Denials:
    def __init__(
        self,
        log: HookEventLog,
        threads: ThreadStore,
        contexts: ContextReader,
        sender: Sender,
        client: MatrixClient,
        render: Renderer,
        lock: Callable[[ThreadID], AbstractAsyncContextManager[Any]],
    ) -> None:
        self.log = log
        self.threads = threads
        self.contexts = contexts
        self.sender = sender
        self.client = client
        self.render = render
        self.lock = lock

    async def show(self, thread_id: ThreadID, request_id: int, reason: str) -> bool:
        """Mark the line of the call that PermissionRequest ``request_id`` asked about as denied
        (``reason`` says by whom); False when there is no such line in the room."""
        async with self.lock(thread_id):
            return await self._show(thread_id, request_id, reason)

    async def _show(self, thread_id: ThreadID, request_id: int, reason: str) -> bool:
        thread = await self.threads.get(thread_id)
        request = _loads(await self.log.payload(request_id))
        if thread is None or thread.room_id is None or request is None:
            return False
        found = None
        for pre_id, _, raw in await self.log.recent_of(
            thread_id, (PRE_TOOL_USE.name,), request_id, CALLS_LOOKED_AT
        ):
            pre = _loads(raw)
            if pre is not None and _call(pre) == _call(request):
                found = pre_id, pre
                break
        if found is None:
            return False
        pre_id, pre = found
        try:
            denied = parse_hook_event(
                {**pre, "hook_event_name": PERMISSION_DENIED.name, "reason": reason}
            )
        except HookInputError:
            return False
        pending = PendingEvent(HookEventID(pre_id), thread_id, PERMISSION_DENIED.name, "", 0, 0)
        shown = False
        for part, message in enumerate(
            self.render(denied, await self.contexts.context(thread, denied, pending))
        ):
            if message.replaces is None:
                continue  # no line of its own to mark: the request's prompt says it
            original, _ = await self.sender.sent.anchor_target(thread_id, message.replaces)
            if original is None:
                continue
            content, _ = await self.sender.relate(thread_id, message, dict(message.content))
            ghost = await self.sender.ghost(thread, message)
            txn_id = f"cb.denied.{request_id}.{part}"
            try:
                await self.client.send_event(
                    ghost, thread.room_id, message.event_type, content, txn_id
                )
                shown = True
            except MatrixError as e:
                if e.temporary:
                    raise
                log.warning("homeserver refused a denied call's line", error=str(e))
        return shown


def _loads(payload: str | None) -> dict[str, Any] | None:
    try:
        data = json.loads(payload) if payload is not None else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
