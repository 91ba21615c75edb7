"""What the renderer is told around approvals, read from the store.

* Whether a Notification only repeats a permission request that was open when it arrived
  (the catalogue's ``echoes_approval``): its prompt pinged already.
* What the session last saw of the file an Edit, MultiEdit or Write asks to change (its latest
  Read, edit or write of that path), so the prompt's diff has the file's line numbers and whole
  lines, as Claude Code's own dialog does.
"""

from __future__ import annotations

import json

from claude_bridge.events.catalogue import POST_TOOL_USE, kind_of
from claude_bridge.events.models import HookEvent, PermissionRequest
from claude_bridge.render.diff import EDIT_TOOLS, Seen, seen_in
from claude_bridge.store import HookEventLog, PendingEvent
from claude_bridge.store.approvals import ApprovalStore

ECHO_GRACE_MS = 60_000
"""A "needs your permission" arriving this soon after a request was decided is still about it:
Claude Code sends it when its dialog has waited a few seconds, and may not cancel it when the
hook's answer closes the dialog."""
CALLS_LOOKED_AT = 200
"""Tool results searched back for what a file held (Claude Code reads a file before editing)."""


class ApprovalContext:
    def __init__(self, log: HookEventLog) -> None:
        self.log = log
        self.approvals = ApprovalStore(log.db)

    async def echoes_approval(self, thread_id: str, hook: HookEvent, event: PendingEvent) -> bool:
        echo = kind_of(hook.hook_event_name).echoes_approval
        if echo is None or getattr(hook, "notification_type", None) != echo:
            return False
        since = event.received_at - ECHO_GRACE_MS
        return await self.approvals.open_since(thread_id, event.id, since)

    async def seen(self, thread_id: str, hook: HookEvent, event: PendingEvent) -> Seen | None:
        if not isinstance(hook, PermissionRequest) or hook.tool_name not in EDIT_TOOLS:
            return None
        path = hook.tool_input.get("file_path")
        if not isinstance(path, str) or not path:
            return None
        forms = (path, json.dumps(path)[1:-1])
        for _, _, raw in await self.log.recent_of(
            thread_id, (POST_TOOL_USE.name,), event.id, CALLS_LOOKED_AT
        ):
            if not any(form in raw for form in forms):
                continue  # cheaper than parsing every tool's output
            try:
                data = json.loads(raw)
            except ValueError:
                continue
            tool_input = data.get("tool_input") if isinstance(data, dict) else None
            if not isinstance(tool_input, dict) or tool_input.get("file_path") != path:
                continue
            found = seen_in(str(data.get("tool_name")), tool_input, data.get("tool_response"))
            if found is not None:
                return found[1]
        return None
