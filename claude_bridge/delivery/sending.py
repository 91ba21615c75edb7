"""Sending one rendered message: its ghost, its relations, the look-up before a risky re-send."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from claude_bridge import coalesce
from claude_bridge.log import get_logger
from claude_bridge.matrix.client import MatrixClient, MatrixError
from claude_bridge.matrix.relations import edit_content
from claude_bridge.matrix.txn_lookup import find_sent
from claude_bridge.render.images import too_large_text
from claude_bridge.render.messages import Attachment, OutboundMessage
from claude_bridge.room_state import THREAD_STATE, merged
from claude_bridge.router import ThreadRouter
from claude_bridge.slots import SendSlots
from claude_bridge.store import PendingEvent, SentEvents, Thread, ThreadStore

log = get_logger("delivery")


def thread_relation(root: str) -> dict[str, Any]:
    """``m.relates_to`` of a reply in the thread rooted at ``root`` (with the reply fallback)."""
    return {
        "rel_type": "m.thread",
        "event_id": root,
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": root},
    }


class Sender:
    def __init__(
        self,
        client: MatrixClient,
        sent: SentEvents,
        threads: ThreadStore,
        router: ThreadRouter,
        slots: SendSlots,
        may_be_sent: Callable[[PendingEvent], bool],
        uncertain: set[int],
    ) -> None:
        self.client = client
        self.sent = sent
        self.threads = threads
        self.router = router
        self.slots = slots
        self.may_be_sent = may_be_sent
        self.uncertain = uncertain
        self.uploads: dict[tuple[int, int], str] = {}
        """(hook event, part) → mxc URI uploaded for it and not yet sent."""

    async def send_part(
        self, thread: Thread, room_id: str, event: PendingEvent, part: int, message: OutboundMessage
    ) -> tuple[str, str | None]:
        """Send one message; returns its event id and the anchor to record it under."""
        sender = await self.ghost(thread, message)
        content = dict(message.content)
        async with self.slots.slot(thread.id):
            if message.event_type == THREAD_STATE and message.state_key == "":
                # Merged into what the room holds: a writer that knows less erases nothing.
                current = await self.client.state_event(sender, room_id, THREAD_STATE)
                content = merged(current, content)
            if message.state_key is not None:
                state_id = await self.client.send_state(
                    sender, room_id, message.event_type, message.state_key, content
                )
                return state_id, message.anchor
            content, anchor = await self.relate(thread.id, message, content)
            txn_id = f"cb.{event.id}.{part}"
            if self.may_be_sent(event):
                found = await self.find(thread, sender, room_id, message.event_type, txn_id)
                if found:
                    log.info("already in the room, not sent again", hook_event=event.id, part=part)
                    return found, anchor
            if message.attachment is not None:
                content = await self.attach(sender, (event.id, part), message.attachment, content)
            try:
                sent = await self.client.send_event(
                    sender, room_id, message.event_type, content, txn_id
                )
                self.uploads.pop((event.id, part), None)
                return sent, anchor
            except MatrixError as e:
                if e.temporary:
                    raise  # retried: the upload is kept for it
                self.uploads.pop((event.id, part), None)
                log.error(
                    "homeserver rejected a message", hook_event=event.id, part=part, error=str(e)
                )
                notice = {
                    "msgtype": "m.notice",
                    "body": f"⚠️ could not mirror part of {event.event_name}: {e.errcode or e.status}",
                    "m.mentions": {},
                }
                fallback = await self.client.send_event(
                    sender, room_id, "m.room.message", notice, f"{txn_id}.fallback"
                )
                return fallback, message.anchor

    async def attach(
        self, sender: str, key: tuple[int, int], att: Attachment, content: dict[str, Any]
    ) -> dict[str, Any]:
        """``content`` with the attachment uploaded into ``url`` (and ``info.thumbnail_url``),
        or, if the homeserver refuses it as too large, a line saying so instead.

        A part is uploaded once per process: a retry after a failed send reuses the mxc URI.
        After a crash between upload and send the bytes are uploaded again, an unused copy in
        the media repository; the message itself is never doubled (its transaction id)."""
        url = self.uploads.get(key)
        if url is None:
            try:
                url = await self.client.upload(sender, att.data, att.filename, att.mimetype)
            except MatrixError as e:
                if e.status != 413 and e.errcode != "M_TOO_LARGE":
                    raise
                log.warning(
                    "attachment over the upload limit", file=att.filename, size=len(att.data)
                )
                line = {"msgtype": "m.notice", "body": too_large_text(content), "m.mentions": {}}
                if "m.relates_to" in content:  # still in the call's thread
                    line["m.relates_to"] = content["m.relates_to"]
                return line
            self.uploads[key] = url
        content["url"] = url
        info = content.get("info")
        if att.thumbnail and isinstance(info, dict):
            content["info"] = {**info, "thumbnail_url": url}
        return content

    async def find(
        self, thread: Thread, sender: str, room_id: str, event_type: str, txn_id: str
    ) -> str | None:
        """The event sent earlier as ``txn_id``, or as a merged message this part began; the
        parts of other hook events a merged message holds are recorded with it."""
        found = await find_sent(
            self.client, sender, room_id, event_type, txn_id, or_prefix=f"{txn_id}.m"
        )
        if not found:
            return None
        event_id = str(found["event_id"])
        content = found.get("content") or {}
        if lines := coalesce.lines_from_content(content):
            await self.sent.record_lines(thread.id, event_id, lines)
            self.uncertain.update(line.hook_event for line in lines)
        elif parts := coalesce.parts_from_content(content):
            await self.sent.record_parts(thread.id, event_id, parts)
            self.uncertain.update(hook_event for hook_event, _ in parts)
        return event_id

    async def relate(
        self, thread_id: str, message: OutboundMessage, content: dict[str, Any]
    ) -> tuple[dict[str, Any], str | None]:
        """Resolve anchors into relations; also say which anchor the sent event should carry.

        An edit whose original is unknown (its first send was rejected) is sent as a new message
        and takes the original's anchor, so later edits edit it instead of each posting anew.
        """
        anchor = message.anchor
        if message.replaces:
            original, lines = await self.sent.anchor_target(thread_id, message.replaces)
            if original and lines:
                # One line of a merged message: the edit shows all of them, that one changed.
                # Stored first, so a retry or a later edit of another line builds on it.
                lines = coalesce.replace_line(lines, message.replaces, message)
                await self.sent.set_lines(original, lines)
                return edit_content(original, coalesce.merged_content(lines)), anchor
            if original:
                return edit_content(original, content), anchor
            anchor = anchor or message.replaces
        if message.thread_root:
            root, lines = await self.sent.anchor_target(thread_id, message.thread_root)
            if lines:
                line = next((x for x in lines if x.anchor == message.thread_root), None)
                if line is not None:
                    content = coalesce.in_reply_to_line(content, line)
            if root:
                content["m.relates_to"] = thread_relation(root)
        return content, anchor

    async def ghost(self, thread: Thread, message: OutboundMessage) -> str:
        """The ghost that speaks ``message``: the thread's, or a subagent's (joined first)."""
        if not message.sender:
            return thread.ghost_mxid
        sender = self.router.names.ghost(thread.id, message.sender)
        await self.router.ensure_member(
            thread, sender, message.sender_displayname or self.router.displayname(thread)
        )
        return sender

    async def after_part(self, thread: Thread, message: OutboundMessage) -> None:
        """Keep the thread row in step with what the room now shows."""
        if message.event_type == "m.room.name" and message.state_key == "":
            thread.title = str(message.content.get("name", ""))
            await self.threads.set_title(thread.id, thread.title)
        elif message.event_type == THREAD_STATE and message.state_key == "":
            status, activity = message.content.get("status"), message.content.get("activity")
            if isinstance(status, str):
                thread.status = status
                thread.activity = activity if isinstance(activity, str) else thread.activity
                await self.threads.set_status(thread.id, status, thread.activity)
