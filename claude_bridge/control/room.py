"""Replies to people: from the session's ghost in a thread room, from the bot elsewhere.

Each reply's transaction id derives from the event it answers, so an event handled again (the
bridge stopped before marking it processed) cannot produce a second reply.
"""

from __future__ import annotations

import asyncio

from claude_bridge.log import get_logger
from claude_bridge.matrix.client import MatrixClient, MatrixError
from claude_bridge.render.content import message
from claude_bridge.render.markdown import markdown_to_html
from claude_bridge.store import Thread

log = get_logger("control")

TRIES = 4
BACKOFF = 0.5


class RoomReplies:
    def __init__(self, client: MatrixClient) -> None:
        self.client = client

    async def send(
        self,
        thread: Thread | None,
        room_id: str,
        answering: str,
        text: str,
        *,
        reply_to: str | None = None,
        mention: str | None = None,
        as_reply: bool = True,
    ) -> None:
        """Send ``text`` (Markdown) as a reply to ``reply_to``, by default the event answered."""
        sender = thread.ghost_mxid if thread else self.client.bot_mxid
        content = message(text, markdown_to_html(text), mentions=[mention] if mention else ())
        if as_reply:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to or answering}}
        delay = BACKOFF
        for attempt in range(1, TRIES + 1):
            try:
                await self.client.send_event(
                    sender, room_id, "m.room.message", content, f"cb.reply.{answering}"
                )
                return
            except MatrixError as e:
                if not e.temporary or attempt == TRIES:
                    log.warning("could not reply", room_id=room_id, to=answering, error=str(e))
                    return
                await asyncio.sleep(max(delay, (e.retry_after_ms or 0) / 1000))
                delay *= 2
