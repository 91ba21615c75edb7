"""Wake-ups for held hook answers: "something changed for this thread / this approval".

The database is the truth; a signal only says "look again". A holder registers before it reads
the database, so a change that lands between its read and its wait still wakes it. ``close``
wakes every holder for good (bridge shutdown: each answers ``{}``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterator

# Held answers whose client cannot say when it goes (``Connected.watch`` gives None: no hook
# server's ``Hangups`` installed, or a plain callable) look at it this often: aiohttp does not
# cancel a handler whose client went away, so a hook Claude Code gave up on must be noticed.
CONNECTION_POLL = 0.5
IDLE_POLL = 5.0
"""How often a background waiter's client is looked at (``wait(..., idle=True)``). There are
many of them (one per idle session) and nothing waits on noticing one gone: a message is never
claimed for a waiter whose client has left (``MessageQueue.take`` looks), and a newer waiter of
the session ends the older one at once; only its slot is held a few seconds longer."""
_IDLE_BUCKETS = round(IDLE_POLL / CONNECTION_POLL)


def thread_key(thread_id: str) -> str:
    return f"thread:{thread_id}"


def approval_key(hook_event_id: int) -> str:
    return f"approval:{hook_event_id}"


class Signals:
    def __init__(self) -> None:
        self._listeners: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self.closed = False
        # Held answers waiting right now, and how each sees its client: one sweep looks at all
        # of them every CONNECTION_POLL s (a timer per held answer cost ~1 % of a core per
        # thousand held).
        self._watched: dict[asyncio.Event, Callable[[], bool]] = {}
        # Background waiters: in buckets, one looked at per sweep (each every IDLE_POLL s).
        self._idle: list[dict[asyncio.Event, Callable[[], bool]]] = [
            {} for _ in range(_IDLE_BUCKETS)
        ]
        self._next_bucket = 0
        self._sweeps = 0
        self._sweeper: asyncio.Task[None] | None = None

    def fire(self, key: str) -> None:
        for event in self._listeners.get(key, ()):
            event.set()

    def close(self) -> None:
        self.closed = True
        for listeners in self._listeners.values():
            for event in listeners:
                event.set()

    def holding(self, key: str) -> int:
        """How many holders wait on ``key`` right now."""
        return len(self._listeners.get(key, ()))

    @contextlib.contextmanager
    def listen(self, key: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        if self.closed:
            event.set()
        self._listeners[key].add(event)
        try:
            yield event
        finally:
            self._listeners[key].discard(event)
            if not self._listeners[key]:
                del self._listeners[key]

    async def wait(
        self,
        wake: asyncio.Event,
        deadline: float,
        connected: Callable[[], bool],
        *,
        idle: bool = False,
    ) -> bool:
        """Sleep until ``wake`` is set, the deadline (``loop.time()``) passes or the client
        disconnects: at once when ``connected`` can tell (``hooks.held.Connected.watch``, the
        hook server's requests), else noticed by the sweep within CONNECTION_POLL s (IDLE_POLL
        s with ``idle``).

        True when woken (look at the database again); False when the time is up or nobody is
        listening any more.
        """
        loop = asyncio.get_running_loop()
        if not wake.is_set():
            if deadline <= loop.time() or not connected():
                return False
            watch = getattr(connected, "watch", None)
            unwatch = watch(wake.set) if watch is not None else None
            watched: dict[asyncio.Event, Callable[[], bool]] | None = None
            if unwatch is None:  # nobody tells when the client goes: the sweep looks
                if idle:
                    watched = self._idle[self._next_bucket]
                    self._next_bucket = (self._next_bucket + 1) % _IDLE_BUCKETS
                else:
                    watched = self._watched
                watched[wake] = connected
                if self._sweeper is None:
                    self._sweeper = loop.create_task(self._sweep(), name="held-connection-sweep")
            # The deadline sets ``wake`` too: a plain timer, not ``asyncio.timeout_at``, whose
            # cancel-and-raise on expiry was a tenth of an idle bridge's CPU with 10,000
            # waiters re-polling as their polls ran out.
            timer = loop.call_at(deadline, wake.set)
            try:
                await wake.wait()
            finally:
                timer.cancel()
                if unwatch is not None:
                    unwatch()
                if watched is not None:
                    watched.pop(wake, None)
            if not connected():
                return False
            if loop.time() >= deadline:  # the time is up (a change this late: look next time)
                wake.clear()
                return False
        wake.clear()
        return True

    async def _sweep(self) -> None:
        """Wake every held answer whose client went away; ends when none is held."""
        try:
            while self._watched or any(self._idle):
                await asyncio.sleep(CONNECTION_POLL)
                self._sweeps += 1
                for watched in (self._watched, self._idle[self._sweeps % _IDLE_BUCKETS]):
                    for wake, connected in list(watched.items()):
                        if not connected():
                            wake.set()
        finally:
            self._sweeper = None
