"""When Python's garbage collector takes its long pauses: at a quiet moment, not under a hook.

Python collects in three generations. A young collection walks the objects allocated since the
last one and is short. The older two walk everything that survived, and a bridge holding
10,000 long-polls and 1,000 approvals has about a million such objects (aiohttp's request, the
handler's coroutine, timers): a middle collection after the held connections were set up took
479 ms, and a full one takes as long. Left to Python, they come when an allocation count runs
over, which is when the bridge is busiest; a hook answered during one waits it out
(``bench run --only hold``: the active sessions' ack p99 went from 8 to 277 ms in the run that
had one; docs/scaling.md).

Young collections are short only while the young generation is small, and Python counts
allocations *minus deallocations* to decide when one is due. Where long-lived objects are
replaced all the time (a waiter's poll ends, its next one begins: 33 a second with 10,000
waiters), the frees cancel the allocations, no young collection comes, and the young generation
grows: 56 s without one, then one of 56 ms in the middle of a hook burst.

So the bridge keeps the young collections automatic, at :data:`YOUNG_THRESHOLD` allocations,
adds one whenever :data:`YOUNG_AT_LEAST_EVERY` s pass without any (:data:`YOUNG_WHILE_BUSY` s
while hooks come, to keep each pause short), and runs the older ones itself
(:class:`QuietCollector`):

- a middle collection once the young ones have run :data:`MIDDLE_WHEN_QUIET` times and no hook
  request or appservice transaction came for :data:`QUIET` s; or after
  :data:`MIDDLE_AT_MOST` young ones in any case, which is when Python's thresholds as the bridge
  set them before would have run it;
- a full collection when one is due and the bridge is quiet: at most every
  :data:`FULL_MIN_INTERVAL` s and no more than :data:`FULL_SHARE` of the time (a 0.5 s collection
  waits 500 s for the next); if no quiet moment comes for :data:`FULL_FORCE_AFTER` s after it
  is due, it runs anyway, so a bridge that is never quiet still frees cyclic garbage.

Python's own older-generation thresholds stay as a backstop (:data:`BACKSTOP_THRESHOLDS`),
should the schedule stop. ``claude_bridge_gc_pause_seconds`` shows every collection's pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable
from typing import Any

from claude_bridge.log import get_logger
from claude_bridge.metrics import GC_PAUSE_SECONDS

log = get_logger("collector")

YOUNG_THRESHOLD = 20_000
"""Allocations between young collections. Python's 700 ran one every few hook events; at 20,000
the idle bridge with everything held went from 2.17 to 2.00 % of a core (docs/scaling.md)."""
BACKSTOP_THRESHOLDS = (YOUNG_THRESHOLD, 1_000, 1_000)
"""Python's automatic older collections only after 1,000 young (and 1,000 middle) ones: far
past what the schedule lets accumulate, so they run only if the schedule is not running."""
TICK = 0.25
"""Seconds between two looks at the collector's counts."""
YOUNG_AT_LEAST_EVERY = 1.0
"""Seconds at most between two young collections while the bridge is quiet."""
YOUNG_WHILE_BUSY = 0.25
"""The same while hooks or transactions come. What a young collection walks is what a second of
work left alive, and with 11,000 connections held each object's references lead into a 290 MB
heap: 7–11 ms a pause on the AMD machine, against 3 ms with nothing held, and a hook arriving
meanwhile waits it out. Every 0.25 s they took 2.9 ms each, for about the same total
(``bench run --only hold``, docs/scaling.md). Not while quiet: idle CPU is what a quiet bridge
spends, and there each is short anyway. Under uninterrupted load :data:`MIDDLE_AT_MOST` young
ones now come in about 15 s instead of 50."""
QUIET = 0.5
"""Seconds without a hook request or appservice transaction that count as a quiet moment."""
MIDDLE_WHEN_QUIET = 5
MIDDLE_AT_MOST = 50
FULL_MIN_INTERVAL = 60.0
FULL_SHARE = 0.001
FULL_FORCE_AFTER = 600.0


_last_collection = [float("-inf")]
"""When the last collection of any generation ended (each one collects the young too)."""


class Activity:
    """When the bridge last had work someone waits on; the hook server (for a known token's
    request) and the appservice listener (past its ``hs_token`` check) :meth:`note` it.
    Long-poll re-polls don't count: nobody waits on their answer. A stranger's requests don't
    either: they could otherwise keep the bridge from ever having a quiet moment, which would
    only bring back the pauses under load (the forced collections), nothing worse."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = float("-inf")

    def note(self) -> None:
        self.last = time.monotonic()


ACTIVITY = Activity()
"""The process's: the collector it schedules is the process's too."""


class QuietCollector:
    """Runs the middle and full collections, and a young one where none came for a second
    (see the module's docstring)."""

    def __init__(
        self,
        activity: Activity = ACTIVITY,
        *,
        clock: Callable[[], float] = time.monotonic,
        counts: Callable[[], tuple[int, int, int]] = gc.get_count,
        collect: Callable[[int], int] = gc.collect,
        last_collection: Callable[[], float] = lambda: _last_collection[0],
    ) -> None:
        self.activity = activity
        self.clock = clock
        self.counts = counts
        self.collect = collect
        self.last_collection = last_collection
        self.last_full = clock()
        self.last_full_seconds = 0.0
        self.full_due_since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._thresholds_before: tuple[int, int, int] | None = None

    def start(self) -> None:
        """Take the older collections over from Python's thresholds, and time every pause."""
        self._thresholds_before = gc.get_threshold()
        gc.set_threshold(*BACKSTOP_THRESHOLDS)
        if _time_pause not in gc.callbacks:
            gc.callbacks.append(_time_pause)
        self.last_full = self.clock()
        self._task = asyncio.create_task(self._run(), name="quiet-collector")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(_time_pause)
        if self._thresholds_before is not None:  # Python's own schedule again
            gc.set_threshold(*self._thresholds_before)
            self._thresholds_before = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                self.tick()
            except Exception:  # a collection that raised (a finaliser's error) is no reason to stop
                log.exception("scheduled garbage collection failed")

    def tick(self) -> int | None:
        """Run the collection that is due now, if any; returns its generation."""
        now = self.clock()
        _, young, middle = self.counts()
        quiet = now - self.activity.last >= QUIET
        if middle and now - self.last_full >= max(
            FULL_MIN_INTERVAL, self.last_full_seconds / FULL_SHARE
        ):
            if self.full_due_since is None:
                self.full_due_since = now
            if quiet or now - self.full_due_since >= FULL_FORCE_AFTER:
                self.collect(2)
                self.last_full = self.clock()
                self.last_full_seconds = self.last_full - now
                self.full_due_since = None
                return 2
        if young >= MIDDLE_AT_MOST or (quiet and young >= MIDDLE_WHEN_QUIET):
            self.collect(1)
            return 1
        if now - self.last_collection() >= (YOUNG_AT_LEAST_EVERY if quiet else YOUNG_WHILE_BUSY):
            self.collect(0)
            return 0
        return None


_pause_started = [0.0]


def _time_pause(phase: str, info: dict[str, Any]) -> None:
    # Runs inside every collection, automatic or scheduled: as little as can be.
    if phase == "start":
        _pause_started[0] = time.perf_counter()
    else:
        GC_PAUSE_SECONDS.labels(str(info["generation"])).observe(
            time.perf_counter() - _pause_started[0]
        )
        _last_collection[0] = time.monotonic()
