"""The inbox worker: Matrix events stored by the transaction endpoint → the bridge's reactions.

Transactions are answered as soon as their events are stored; this worker does the rest in the
background, in arrival order, and marks each event processed when done. Handlers are plug-ins
(``register``) so steering (messages to Claude, approvals, commands) lives in its own package.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from claude_bridge.log import get_logger
from claude_bridge.matrix.echo import EchoFilter
from claude_bridge.store import MatrixInbox
from claude_bridge.store.inbox import InboxEvent
from claude_bridge.worker import Worker

log = get_logger("inbound")

Handler = Callable[[InboxEvent], Awaitable[None]]


class InboundProcessor(Worker):
    name = "inbound"

    def __init__(self, inbox: MatrixInbox, *, echoes: EchoFilter) -> None:
        super().__init__()
        self.inbox = inbox
        self.echoes = echoes
        self.handlers: list[Handler] = []

    def register(self, handler: Handler) -> None:
        self.handlers.append(handler)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                while batch := await self.inbox.unprocessed(100):
                    for event in batch:
                        await self._process(event)
            except Exception:
                log.exception("inbox read failed; retrying shortly")
                await asyncio.sleep(1)
                self._wake.set()

    async def _process(self, event: InboxEvent) -> None:
        # Our own ghosts' and bot's events come back to us: never act on them (no loops).
        if not self.echoes.is_echo(event.event):
            for handler in self.handlers:
                try:
                    await handler(event)
                except Exception:
                    log.exception(
                        "inbound handler failed", event_id=event.event_id, room_id=event.room_id
                    )
        await self.inbox.mark_processed(event.event_id)
