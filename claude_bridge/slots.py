"""A cap on concurrent homeserver sends that is fair between rooms and that hung requests cannot
hold for ever.

Delivery runs one task per thread and caps how many of them talk to the homeserver at once.

- **Fair.** A free slot goes to the waiting thread served longest ago, not to the one that asked
  first. With first-come order, fifty busy rooms queue for the slots again as soon as each
  send returns, and a quiet session's one prompt or approval waits a whole round behind them
  (1.5 s against Synapse's 0.5 s under the bench's load). A thread is passed over at most once
  by each other thread, which then counts as served most recently: nobody starves.
- **Hung sends give their slot back.** With a plain semaphore, N rooms whose sends hang (a stuck
  room, a proxy that swallows answers) hold N slots until ``homeserver.request_timeout``; with N
  at the cap, every other thread waits that long, again on every retry. Here a send still
  unanswered after ``patience`` seconds gives its slot back: it keeps waiting for its answer,
  but no longer counts against the cap. Concurrency can then exceed the cap by the number of
  overdue sends — at most one per thread, since a thread sends in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator

DEFAULT_PATIENCE = 2.0
"""Far above a healthy send (tens of ms), far below the request timeout (30 s by default)."""
NEVER = -1
"""The turn of a thread never served (or long ago): ahead of every thread served lately."""
REMEMBERED = 4096
"""Threads whose last turn is kept; past it the older half is forgotten (as if never served)."""


class SendSlots:
    def __init__(self, limit: int, patience: float = DEFAULT_PATIENCE) -> None:
        self.limit = limit
        self.patience = patience
        self.overdue = 0
        """Sends past their patience, still waiting for an answer (a gauge worth exporting)."""
        self._free = limit
        self._turns = itertools.count()
        self._served: dict[str, int] = {}  # thread → the turn it was last given a slot
        # (last served, arrival, future): the front is the thread served longest ago.
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []

    def locked(self) -> bool:
        """No slot free now."""
        return self._free <= 0

    @contextlib.asynccontextmanager
    async def slot(self, key: str = "") -> AsyncIterator[None]:
        """Hold one of the slots for a send of ``key`` (the thread)."""
        await self._acquire(key)
        held = True

        def give_back() -> None:
            nonlocal held
            held = False
            self.overdue += 1
            self._release()

        timer = asyncio.get_running_loop().call_later(self.patience, give_back)
        try:
            yield
        finally:
            timer.cancel()
            if held:
                self._release()
            else:
                self.overdue -= 1

    async def _acquire(self, key: str) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            self._serve(key)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (self._served.get(key, NEVER), next(self._turns), future)
        heapq.heappush(self._waiting, entry)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release()  # granted as we were cancelled: pass it on
            elif entry in self._waiting:
                self._waiting.remove(entry)
                heapq.heapify(self._waiting)
            raise
        self._serve(key)

    def _serve(self, key: str) -> None:
        self._served[key] = next(self._turns)
        if len(self._served) > REMEMBERED:
            recent = sorted(self._served.items(), key=lambda kv: kv[1])[REMEMBERED // 2 :]
            self._served = dict(recent)

    def _release(self) -> None:
        while self._waiting:
            _, _, future = heapq.heappop(self._waiting)
            if not future.done():
                future.set_result(None)  # the slot passes straight to it
                return
        self._free += 1
