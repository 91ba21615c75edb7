"""Hand-offs nobody decides are withdrawn after ``bridge.control.handoff_expiry`` seconds.

Each waiting proposal pinged the operators and holds a place under ``handoff_max_waiting``; one
left undecided would hold it for good. Expiring is one conditional UPDATE (a decision taken at
the same moment wins, and each proposal expires once), then a reply to the hand-off in its room
says so, mentioning nobody. A late ✅ is then told the hand-off was already decided (expired).
"""

from __future__ import annotations

import asyncio
import contextlib

from claude_bridge.control.parts import Parts
from claude_bridge.control.room import RoomReplies
from claude_bridge.log import get_logger
from claude_bridge.store import now_ms
from claude_bridge.store.session_messages import SessionMessage

log = get_logger("handoffs")

ACTOR = "bridge"
"""Who the audit log names for an expiry: no person decided it."""


def check_every(expiry: float) -> float:
    """How often to look: a quarter of the expiry, between a fifth of a second and a minute."""
    return min(max(expiry / 4, 0.2), 60.0)


class HandoffExpiry:
    def __init__(self, parts: Parts, replies: RoomReplies) -> None:
        self.p = parts
        self.replies = replies
        self.expiry = parts.options.handoff_expiry
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="handoff-expiry")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.expire()
            except Exception as e:
                log.warning("expiring hand-offs failed; will try again", error=repr(e))
            await asyncio.sleep(check_every(self.expiry))

    async def expire(self) -> int:
        """Withdraw every hand-off waiting longer than the expiry; how many."""
        expired = await self.p.inbox.expire_proposals(now_ms() - int(self.expiry * 1000))
        for message in expired:
            await self._tell(message)
        return len(expired)

    async def _tell(self, message: SessionMessage) -> None:
        await self.p.audit.record(message.thread_id, ACTOR, "handoff expired", message.event_id)
        thread = await self.p.threads.get(message.thread_id)
        await self.replies.send(
            thread,
            message.room_id,
            f"{message.event_id}.expired",
            f"⌛ No operator decided on this hand-off within {_span(self.expiry)}: it is "
            "withdrawn, and this session's Claude does not get it.",
            reply_to=message.event_id,
        )
        log.info("hand-off expired", thread_id=message.thread_id, event_id=message.event_id)


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{round(seconds)} s"
    if seconds < 2 * 3600:
        return f"{round(seconds / 60)} minutes"
    return f"{round(seconds / 3600)} hours"
