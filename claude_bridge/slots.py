"""A cap on concurrent homeserver sends that hung requests cannot hold for ever.

Delivery runs one task per thread and caps how many of them talk to the homeserver at once. With a
plain semaphore, N rooms whose sends hang (a stuck room, a proxy that swallows answers) hold N
slots until ``homeserver.request_timeout``; with N at the cap, every other thread waits that long,
again on every retry. Here a send still unanswered after ``patience`` seconds gives its slot back:
it keeps waiting for its answer, but no longer counts against the cap. Concurrency can then exceed
the cap by the number of overdue sends — at most one per thread, since a thread sends in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

DEFAULT_PATIENCE = 2.0
"""Far above a healthy send (tens of ms), far below the request timeout (30 s by default)."""


class SendSlots:
    def __init__(self, limit: int, patience: float = DEFAULT_PATIENCE) -> None:
        self._free = asyncio.Semaphore(limit)
        self.limit = limit
        self.patience = patience
        self.overdue = 0
        """Sends past their patience, still waiting for an answer (a gauge worth exporting)."""

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self._free.acquire()
        held = True

        def give_back() -> None:
            nonlocal held
            held = False
            self.overdue += 1
            self._free.release()

        timer = asyncio.get_running_loop().call_later(self.patience, give_back)
        try:
            yield
        finally:
            timer.cancel()
            if held:
                self._free.release()
            else:
                self.overdue -= 1
