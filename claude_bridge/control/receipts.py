"""Showing in the room what happened to what people sent: the ✓ and the settled request.

* A message Claude received gets a ✓ reaction from the session's ghost on the operator's own
  message, so the sender sees Claude got it.
* A settled approval's request message is edited (``m.replace``, by whoever sent it: the session's
  ghost or a subagent's): the outcome, who decided (by their display name, linked), over the
  request; the instructions go. A call denied here also gets its tool line marked 🚫
  (``delivery/denials.py``), since Claude Code sends nothing that would.

Both are durable (``shown_at`` columns) and use deterministic transaction ids, so a restart or a
retry never shows anything twice. A request message that delivery has not posted yet (homeserver
away) is waited for; after ``ORPHAN_AFTER`` the outcome is posted on its own instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from claude_bridge.control import decisions
from claude_bridge.ids import ThreadID
from claude_bridge.log import get_logger
from claude_bridge.matrix.client import MatrixClient, MatrixError, quote
from claude_bridge.matrix.relations import edit_content
from claude_bridge.render.text import one_line
from claude_bridge.store import Thread, ThreadStore
from claude_bridge.store.approvals import Approval, ApprovalStore
from claude_bridge.store.database import now_ms
from claude_bridge.store.session_messages import SessionInbox, SessionMessage
from claude_bridge.worker import Worker

log = get_logger("receipts")

DELIVERED_KEY = "✓"
RETRY = 1.0
BACKOFF_MAX = 30.0
ORPHAN_AFTER_MS = 10 * 60 * 1000
NAME_CHARS = 60

ShowDenied = Callable[[ThreadID, int, str], Awaitable[bool]]


class Receipts(Worker):
    """Shows deliveries in the room (✓ on the message) and settles approval prompts' edits."""

    name = "receipts"

    def __init__(
        self,
        inbox: SessionInbox,
        approvals: ApprovalStore,
        threads: ThreadStore,
        client: MatrixClient,
        *,
        approval_timeout: float,
    ) -> None:
        super().__init__()
        self.inbox = inbox
        self.approvals = approvals
        self.threads = threads
        self.client = client
        self.approval_timeout = approval_timeout
        self.show_denied: ShowDenied | None = None
        """Marks a denied call's tool line (the delivery's, set once delivery exists)."""

    async def _run(self) -> None:
        delay: float | None = None
        failures = 0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            try:
                later = await self._show_all()
                failures = 0
                delay = RETRY if later else None
            except Exception as e:  # homeserver or database away: keep everything, try again
                failures += 1
                delay = min(RETRY * 2**failures, BACKOFF_MAX)
                log.warning("showing receipts failed, will retry", error=repr(e), retry_in=delay)

    async def _show_all(self) -> bool:
        """One pass; True when something must be looked at again shortly."""
        for message in await self.inbox.unshown():
            await self._react(message)
        later = False
        for approval in await self.approvals.unshown():
            later |= not await self._settle(approval)
        return later

    async def _react(self, message: SessionMessage) -> None:
        thread = await self.threads.get(message.thread_id)
        if thread is not None:
            content = {
                "m.relates_to": {
                    "rel_type": "m.annotation",
                    "event_id": message.event_id,
                    "key": DELIVERED_KEY,
                }
            }
            await self._send(
                thread.ghost_mxid, message.room_id, "m.reaction", content, "ack", message.id
            )
        await self.inbox.mark_shown(message.id)

    async def _settle(self, approval: Approval) -> bool:
        """Edit the request message; False when it is not in the room yet (try again later)."""
        thread = await self.threads.get(approval.thread_id)
        target = await self.approvals.request_message(approval.hook_event_id)
        if thread is None or thread.room_id is None or target is None:
            if now_ms() - (approval.decided_at or 0) < ORPHAN_AFTER_MS:
                return False  # delivery has not posted the request yet: look again shortly
            if thread is None or thread.room_id is None:
                await self.approvals.mark_shown(approval.hook_event_id)  # no room to tell
                return True
            who = await self._name(thread, thread.room_id, approval.decided_by)
            content = decisions.settled_content(approval, {}, self.approval_timeout, who)
            await self._send(
                thread.ghost_mxid,
                thread.room_id,
                "m.room.message",
                content,
                "perm",
                approval.hook_event_id,
            )
        else:
            sender, original = thread.ghost_mxid, {}
            try:
                shown = await self.client.request(
                    "GET",
                    f"/_matrix/client/v3/rooms/{quote(thread.room_id)}/event/{quote(target)}",
                    user_id=thread.ghost_mxid,
                )
                sender, original = str(shown.get("sender", sender)), dict(shown.get("content", {}))
            except MatrixError as e:
                if e.temporary:
                    raise
            who = await self._name(thread, thread.room_id, approval.decided_by)
            new = decisions.settled_content(approval, original, self.approval_timeout, who)
            edit = edit_content(target, new)
            await self._send(
                sender, thread.room_id, "m.room.message", edit, "perm", approval.hook_event_id
            )
        if approval.state == decisions.DENY and self.show_denied is not None:
            note = decisions.denied_note(approval, who)
            await self.show_denied(ThreadID(thread.id), approval.hook_event_id, note)
        await self.approvals.mark_shown(approval.hook_event_id)
        return True

    async def _name(self, thread: Thread, room_id: str, user_id: str | None) -> str | None:
        """How the room names ``user_id``: their display name there, else their localpart."""
        if not user_id:
            return None
        try:
            member = await self.client.state_event(
                thread.ghost_mxid, room_id, "m.room.member", user_id
            )
        except MatrixError as e:
            if e.temporary:
                raise
            member = None
        name = member.get("displayname") if isinstance(member, dict) else None
        name = one_line(name, NAME_CHARS) if isinstance(name, str) else ""
        return name or user_id.removeprefix("@").split(":", 1)[0] or user_id

    async def _send(
        self, sender: str, room_id: str, event_type: str, content: dict, kind: str, key: int
    ) -> None:
        try:
            await self.client.send_event(sender, room_id, event_type, content, f"cb.{kind}.{key}")
        except MatrixError as e:
            if e.temporary:
                raise
            # Refused for good (e.g. the ghost left an archived room): nothing to retry.
            log.warning("homeserver refused a receipt", kind=kind, key=key, error=str(e))
