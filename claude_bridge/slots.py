"""A cap on concurrent homeserver sends that lets a quiet room go first and that hung requests
cannot hold for ever.

Delivery runs one task per thread and caps how many of them talk to the homeserver at once.

- **A thread that just woke up goes first.** When the slots are all taken, a thread that had
  nothing to send for ``QUIET_GAP`` seconds before asking (a prompt, an approval, a reply in a
  quiet room: what someone is waiting for) gets the next free slot before threads that ask again
  the moment their last send returned (a session streaming tool calls). A streaming thread
  loses nothing by it: its next message carries every line that queued meanwhile (coalescing).
  Without this, with Synapse saturated by fifty busy rooms, one quiet room's message waited for
  a whole round of their sends (the probe of the bench's load row: 0.5–1.5 s for a slot, then
  its own send). ``RESERVED`` slots are kept for woken threads, so one usually starts at once.
  A streaming thread that has waited ``PROMOTE_AFTER`` seconds goes first and may take any
  slot, so a stream of woken threads cannot starve it.
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
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

DEFAULT_PATIENCE = 2.0
"""Far above a healthy send (tens of ms), far below the request timeout (30 s by default)."""
QUIET_GAP = 0.05
"""Seconds since a thread's last send returned, at least, for its next to count as woken up
(a streaming thread asks again within a few milliseconds: fetch, render, ask)."""
PROMOTE_AFTER = 5.0
"""Seconds a streaming thread waits at most while woken threads go ahead of it."""
RESERVED = 2
"""Slots a streaming thread never takes (unless promoted): free for threads that wake up."""
REMEMBERED = 4096
"""Threads whose last send is remembered; past it, those quiet for a minute are forgotten."""


class SendSlots:
    def __init__(
        self,
        limit: int,
        patience: float = DEFAULT_PATIENCE,
        *,
        promote_after: float = PROMOTE_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.patience = patience
        self.promote_after = promote_after
        self.clock = clock
        self.overdue = 0
        """Sends past their patience, still waiting for an answer (a gauge worth exporting)."""
        self._reserved = min(RESERVED, limit - 1)
        self._held = 0
        self._streaming_held = 0
        self._woken: deque[asyncio.Future[bool]] = deque()
        self._streaming: deque[tuple[float, asyncio.Future[bool]]] = deque()
        self._returned: dict[str, float] = {}  # thread → when its last slot was given back

    def locked(self) -> bool:
        """No slot free now."""
        return self._held >= self.limit

    @contextlib.asynccontextmanager
    async def slot(self, key: str = "") -> AsyncIterator[None]:
        """Hold one of the slots for a send of ``key`` (the thread)."""
        streaming = await self._acquire(key)
        held = True

        def give_back() -> None:
            nonlocal held
            held = False
            self.overdue += 1
            self._release(streaming)

        timer = asyncio.get_running_loop().call_later(self.patience, give_back)
        try:
            yield
        finally:
            timer.cancel()
            if held:
                self._release(streaming)
            else:
                self.overdue -= 1
            self._remember(key)

    async def _acquire(self, key: str) -> bool:
        """Wait for a slot; returns whether it was taken as a streaming thread."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        now = self.clock()
        returned = self._returned.get(key)
        if returned is None or now - returned >= QUIET_GAP:
            self._woken.append(future)
        else:
            self._streaming.append((now, future))
        self._dispatch()
        try:
            return await future  # done already when a slot was free: no wait, no yield
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release(future.result())  # granted as we were cancelled: pass it on
            raise  # a cancelled future left in a queue is skipped by _dispatch

    def _remember(self, key: str) -> None:
        now = self.clock()
        self._returned[key] = now
        if len(self._returned) > REMEMBERED:
            self._returned = {k: t for k, t in self._returned.items() if now - t < 60}

    def _release(self, streaming: bool) -> None:
        self._held -= 1
        self._streaming_held -= streaming
        self._dispatch()

    def _dispatch(self) -> None:
        """Give free slots to waiters: woken threads first, streaming ones within their share
        (any slot once promoted)."""
        while self._held < self.limit:
            while self._woken and self._woken[0].done():
                self._woken.popleft()
            while self._streaming and self._streaming[0][1].done():
                self._streaming.popleft()
            promoted = bool(self._streaming) and (
                self.clock() - self._streaming[0][0] >= self.promote_after
            )
            if self._streaming and (promoted or not self._woken):
                if not promoted and self._streaming_held >= self.limit - self._reserved:
                    return  # the rest is kept for threads that wake up
                future = self._streaming.popleft()[1]
                self._streaming_held += 1
                streaming = True
            elif self._woken:
                future = self._woken.popleft()
                streaming = False
            else:
                return
            self._held += 1
            future.set_result(streaming)
