"""The inbound worker: Matrix events stored by the transaction endpoint → the bridge's reactions.

Transactions are answered as soon as their events are stored; this worker does the rest in the
background, in arrival order, and marks each event processed when done. Handlers are plug-ins
(``register``) so steering (messages to Claude, approvals, commands) lives in its own package;
each gets the event parsed once into the record of its kind (``inbound_events``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from claude_bridge.log import get_logger
from claude_bridge.matrix.echo import EchoFilter
from claude_bridge.matrix.inbound_events import Inbound, parse
from claude_bridge.store import MatrixEventStore
from claude_bridge.store.matrix_events import ReceivedEvent
from claude_bridge.worker import Worker

log = get_logger("inbound")

Handler = Callable[[Inbound], Awaitable[None]]


class InboundProcessor(Worker):
    name = "inbound"

    def __init__(self, store: MatrixEventStore, *, echoes: EchoFilter) -> None:
        super().__init__()
        self.store = store
        self.echoes = echoes
        self.handlers: list[Handler] = []

    def register(self, handler: Handler) -> None:
        self.handlers.append(handler)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                while batch := await self.store.unprocessed(100):
                    for event in batch:
                        await self._process(event)
            except Exception:
                log.exception("reading stored Matrix events failed; retrying shortly")
                await asyncio.sleep(1)
                self._wake.set()

    async def _process(self, stored: ReceivedEvent) -> None:
        event = parse(stored.event)  # once: the handlers get the typed record
        # Our own ghosts' and bot's events come back to us: never act on them (no loops).
        if not self.echoes.is_echo(event):
            for handler in self.handlers:
                try:
                    await handler(event)
                except Exception:
                    log.exception(
                        "inbound handler failed", event_id=event.event_id, room_id=event.room_id
                    )
        await self.store.mark_processed(stored.event_id)
