"""What the renderer is told about a hook event's thread, read from the store."""

from __future__ import annotations

import functools
import json
from typing import Any

from claude_bridge.control.attached_reads import ATTACHED_BY, AttachedReads
from claude_bridge.delivery.approval_context import ApprovalContext
from claude_bridge.delivery.streams import StreamReader, Streams
from claude_bridge.events.catalogue import POST_COMPACT, PRE_COMPACT
from claude_bridge.events.models import (
    HookEvent,
    MessageDisplay,
    PermissionRequest,
    PostCompact,
    SessionStart,
    Stop,
    SubagentStop,
)
from claude_bridge.render.messages import RenderContext
from claude_bridge.router import ThreadRouter
from claude_bridge.store import HookEventLog, PendingEvent, Thread


class ContextReader:
    def __init__(self, log: HookEventLog, router: ThreadRouter, mirror: Any) -> None:
        self.log = log
        self.router = router
        self.mirror = mirror
        self._streams = StreamReader(log)
        self.attached: AttachedReads | None = None
        """Set by the app: a Read the bridge allows at once shows as allowed, pinging nobody."""

    @functools.cached_property
    def around_approvals(self) -> ApprovalContext:
        return ApprovalContext(self.log)

    async def context(self, thread: Thread, hook: HookEvent, event: PendingEvent) -> RenderContext:
        extra: dict[str, Any] = {
            "hook_event_id": event.id,
            "session_id": thread.session_id,
            "cwd": thread.project_path,
            "title": thread.title,
            "activity": thread.activity,  # what the room says now (render/room_status)
        }
        if isinstance(hook, MessageDisplay):
            streams = await self.streams(thread.id, event.id)
            extra["stream_text"] = streams.get(hook.message_id or "", (None, ""))[1]
        elif isinstance(hook, Stop) and not isinstance(hook, SubagentStop) and hook.prompt_id:
            # The turn's text may already be on screen as a streamed message: the renderer then
            # edits or skips instead of posting the reply a second time.
            turn = [
                (mid, text)
                for mid, (prompt, text) in (await self.streams(thread.id, event.id)).items()
                if prompt == hook.prompt_id
            ]
            if turn:
                extra["stream_anchor"], extra["stream_text"] = f"stream:{turn[-1][0]}", turn[-1][1]
        elif isinstance(hook, PostCompact) or (
            isinstance(hook, SessionStart) and hook.source == "compact"
        ):
            compaction = await self.compaction(thread.id, hook, event.id)
            if compaction is not None:
                extra["compaction"] = compaction
        elif (
            isinstance(hook, PermissionRequest)
            and self.attached is not None
            and (who := await self.attached.attacher(hook, thread.id))
        ):
            extra[ATTACHED_BY] = who
        elif await self.around_approvals.echoes_approval(thread.id, hook, event):
            extra["echoes_approval"] = True
        elif (seen := await self.around_approvals.seen(thread.id, hook, event)) is not None:
            extra["seen"] = seen
        return RenderContext(
            thread_id=thread.id,
            project=thread.project_name or "Claude Code",
            operators=tuple(self.router.permissions.invitees()),
            mirror=self.mirror,
            extra=extra,
        )

    async def compaction(
        self, thread_id: str, hook: HookEvent, event_id: int
    ) -> dict[str, Any] | None:
        """The compaction a PostCompact or SessionStart(compact) belongs to, whose one notice it
        edits (render/compaction.py): its PreCompact's id and details, and whether its
        PostCompact came already (Claude Code 2.1.197 sent it before the SessionStart, 2.1.332
        after). ``None``: no PreCompact since the last PostCompact."""
        names = (PRE_COMPACT.name, POST_COMPACT.name)
        latest = await self.log.latest_of(thread_id, names, event_id)
        if isinstance(hook, SessionStart) and latest and latest[1] == POST_COMPACT.name:
            return {"done": True}  # its PostCompact has shown the outcome already
        if latest is None or latest[1] != PRE_COMPACT.name:
            return None
        try:
            pre = json.loads(latest[2])
        except ValueError:
            pre = {}
        pre = pre if isinstance(pre, dict) else {}
        return {
            "pre_compact": latest[0],
            "trigger": pre.get("trigger"),
            "instructions": pre.get("custom_instructions"),
            "done": False,
        }

    async def streams(self, thread_id: str, up_to: int) -> Streams:
        """MessageDisplay streams so far: message id → (prompt id, text), oldest first."""
        return await self._streams.streams(thread_id, up_to)
