"""How many hand-offs the threads API lets through (``bridge.control``): a flood from one hook
token's own sessions would otherwise store a proposal, and ping the operators, for each one.

* ``handoff_max_waiting``: hand-offs waiting for an operator's decision in one thread, counted
  when the next is posted, whichever session (of whichever token) posts it. A hand-off counts
  from the moment it is posted: until its echo from the homeserver is stored as a proposal, it is
  held here (``_posted``), and posts into one thread are taken one at a time, so neither a burst
  nor two sessions posting at once gets past the cap.
* ``handoffs_per_minute``: per hook token, its sessions together, direct hand-offs included.

A refusal is a 429 to the sending Claude (the MCP tool shows it) saying why and when to try
again; nothing is posted. What the bridge holds here is in memory: after a restart, hand-offs
posted just before it and not yet stored count from when they are stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Callable

from claude_bridge.config.sections.control import ControlConfig
from claude_bridge.hooks.limits import TokenBuckets
from claude_bridge.store import Thread, now_ms
from claude_bridge.store.session_messages import SessionInbox

ECHO_WAIT = 600.0
"""Seconds a posted hand-off counts without its proposal stored: longer than any homeserver takes
to hand its echo over; a hand-off the bridge never stores (an encrypted room) stops counting."""


REPEAT_WINDOW = 300.0
"""Seconds a posted hand-off's idempotency key lets a repeated request through unchecked: well
within the homeserver's own memory of transaction ids (Synapse: 30 minutes), so a repeat never
posts anything new."""


class HandoffRefused(Exception):
    """Not posted: the API answers 429 with this message and ``Retry-After``."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


class HandoffLimits:
    def __init__(
        self,
        inbox: SessionInbox,
        options: ControlConfig,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inbox = inbox
        self.options = options
        self.clock = clock
        self.rate = TokenBuckets(options.handoffs_per_minute, clock)
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._posted: defaultdict[str, dict[str, float]] = defaultdict(dict)
        """Per target thread: hand-offs posted (event id → when) whose proposal is not stored."""
        self._keys: OrderedDict[str, float] = OrderedDict()
        """Idempotency keys of hand-offs posted within ``REPEAT_WINDOW`` (key → when)."""

    @contextlib.asynccontextmanager
    async def admit(
        self, token_name: str, target: Thread, proposal: bool, key: str | None = None
    ) -> AsyncIterator[Callable[[str], None]]:
        """Hold the target thread while one hand-off is posted into it; raise
        :class:`HandoffRefused` when the cap or the token's rate forbids it. The caller reports
        the posted event id through the function it gets (a proposal counts from then on).

        ``key``: the request's own idempotency key (with its session and target, as the
        homeserver's transaction id has them). A request repeated with
        the key of one posted already is let through unchecked, since posting it again changes
        nothing (the homeserver answers with the event it has): answering 429 would tell the
        sender that a hand-off which is in the room was not posted."""
        async with self._locks[target.id]:
            if key is not None and self._repeats(key):
                yield lambda _: None
                return
            if proposal:
                await self._check_waiting(target)
            wait = self.rate.take(token_name)
            if wait:
                raise HandoffRefused(
                    f"hand-off refused: the sessions of hook token {token_name!r} posted more "
                    f"than {self.rate.per_minute} hand-offs in a minute "
                    f"(bridge.control.handoffs_per_minute); retry in {math.ceil(wait)} s. "
                    "Nothing was posted.",
                    wait,
                )
            posted = self._posted[target.id] if proposal else {}

            def record(event_id: str) -> None:
                posted[event_id] = self.clock()
                if key is not None:
                    self._keys[key] = self.clock()

            yield record

    def _repeats(self, key: str) -> bool:
        """``key`` is that of a hand-off posted within the window."""
        now = self.clock()
        while self._keys and now - next(iter(self._keys.values())) > REPEAT_WINDOW:
            self._keys.popitem(last=False)
        return key in self._keys

    async def _check_waiting(self, target: Thread) -> None:
        # In flight first: one stored between the two reads is then counted twice, never not.
        in_flight = await self._in_flight(target.id)
        waiting, oldest = await self.inbox.waiting_proposals(target.id)
        waiting += in_flight
        cap = self.options.handoff_max_waiting
        if waiting < cap:
            return
        expiry = self.options.handoff_expiry
        left = expiry if oldest is None else expiry - (now_ms() - oldest) / 1000
        raise HandoffRefused(
            f"hand-off refused: thread {target.id!r} already has {waiting} hand-offs waiting for "
            f"an operator's decision, the most it takes (bridge.control.handoff_max_waiting). "
            "Nothing was posted. Try again once an operator has decided one, or the oldest "
            f"expires (in {math.ceil(max(left, 1))} s).",
            min(max(left, 1), 60),
        )

    async def _in_flight(self, thread_id: str) -> int:
        """Hand-offs posted into the thread whose proposal is not stored yet."""
        posted = self._posted[thread_id]
        now = self.clock()
        for event_id in [e for e, at in posted.items() if now - at > ECHO_WAIT]:
            del posted[event_id]
        for event_id in await self.inbox.stored(posted):
            del posted[event_id]
        return len(posted)
