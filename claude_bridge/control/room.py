"""Replies to people: from the session's ghost in a thread room, from the bot elsewhere.

Each reply's transaction id derives from the event it answers, so an event handled again (the
bridge stopped before marking it processed) cannot produce a second reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

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
        mentions: Sequence[str] = (),
        as_reply: bool = True,
    ) -> str | None:
        """Send ``text`` (Markdown) as a reply to ``reply_to``, by default the event answered.

        Returns the reply's event id, or None when the homeserver would not take it.
        """
        sender = thread.ghost_mxid if thread else self.client.bot_mxid
        pinged = [*([mention] if mention else ()), *mentions]
        content = message(text, markdown_to_html(text), mentions=pinged)
        if as_reply:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to or answering}}
        delay = BACKOFF
        for attempt in range(1, TRIES + 1):
            try:
                return await self.client.send_event(
                    sender, room_id, "m.room.message", content, f"cb.reply.{answering}"
                )
            except MatrixError as e:
                if not e.temporary or attempt == TRIES:
                    log.warning("could not reply", room_id=room_id, to=answering, error=str(e))
                    return None
                await asyncio.sleep(max(delay, (e.retry_after_ms or 0) / 1000))
                delay *= 2
        return None
