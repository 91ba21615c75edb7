"""The cap on concurrent sends (``slots.py``): a thread that wakes up goes before threads that
stream, streaming threads leave slots free for it, a long wait promotes a streaming thread, and
cancelled waiters take no slot with them."""

from __future__ import annotations

import asyncio

from claude_bridge.slots import QUIET_GAP, RESERVED, SendSlots


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _hold(slots: SendSlots, key: str, order: list[str], release: asyncio.Event) -> None:
    async with slots.slot(key):
        order.append(key)
        await release.wait()


async def _sent(slots: SendSlots, key: str) -> None:
    """``key`` sent something just now: asking again at once, it streams."""
    async with slots.slot(key):
        pass


async def test_a_thread_that_wakes_up_goes_before_streaming_ones_that_asked_first() -> None:
    clock = Clock()
    slots = SendSlots(1, clock=clock)
    order: list[str] = []
    for busy in ("s1", "s2"):
        await _sent(slots, busy)
    gate, go = asyncio.Event(), asyncio.Event()
    go.set()
    holder = asyncio.create_task(_hold(slots, "h", order, gate))
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(_hold(slots, key, order, go)) for key in ("s1", "s2", "quiet")]
    await asyncio.sleep(0)
    assert order == ["h"] and slots.locked()
    gate.set()
    await asyncio.gather(holder, *waiters)
    assert order == ["h", "quiet", "s1", "s2"]  # streaming ones keep their order among them


async def test_a_pause_makes_a_streaming_thread_a_woken_one() -> None:
    clock = Clock()
    slots = SendSlots(1, clock=clock)
    order: list[str] = []
    await _sent(slots, "a")
    await _sent(slots, "b")
    clock.now += QUIET_GAP  # b, then a, paused: both woke up, first come first served
    gate, go = asyncio.Event(), asyncio.Event()
    go.set()
    holder = asyncio.create_task(_hold(slots, "h", order, gate))
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(_hold(slots, key, order, go)) for key in ("b", "a")]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(holder, *waiters)
    assert order == ["h", "b", "a"]


async def test_streaming_threads_leave_slots_for_threads_that_wake_up() -> None:
    clock = Clock()
    limit = RESERVED + 2
    slots = SendSlots(limit, clock=clock)
    streams = [f"s{n}" for n in range(limit)]
    for key in streams:
        await _sent(slots, key)
    order: list[str] = []
    gate = asyncio.Event()
    tasks = [asyncio.create_task(_hold(slots, key, order, gate)) for key in streams]
    await asyncio.sleep(0)
    assert order == streams[: limit - RESERVED] and not slots.locked()  # two kept free
    woken = [asyncio.create_task(_hold(slots, f"w{n}", order, gate)) for n in range(RESERVED)]
    await asyncio.sleep(0)
    assert order[-RESERVED:] == [f"w{n}" for n in range(RESERVED)] and slots.locked()
    gate.set()
    await asyncio.gather(*tasks, *woken)
    assert sorted(order) == sorted(streams + [f"w{n}" for n in range(RESERVED)])


async def test_a_streaming_thread_waiting_long_is_promoted() -> None:
    clock = Clock()
    slots = SendSlots(1, clock=clock, promote_after=5.0)
    order: list[str] = []
    await _sent(slots, "s")
    gate, go = asyncio.Event(), asyncio.Event()
    go.set()
    holder = asyncio.create_task(_hold(slots, "h", order, gate))
    await asyncio.sleep(0)
    streaming = asyncio.create_task(_hold(slots, "s", order, go))
    await asyncio.sleep(0)
    clock.now += 5.0  # s has waited its PROMOTE_AFTER by the time w asks
    woken = asyncio.create_task(_hold(slots, "w", order, go))
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(holder, streaming, woken)
    assert order == ["h", "s", "w"]


async def test_among_woken_threads_first_come_first_served() -> None:
    slots = SendSlots(1)
    order: list[str] = []
    gate, go = asyncio.Event(), asyncio.Event()
    go.set()
    holder = asyncio.create_task(_hold(slots, "h", order, gate))
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(_hold(slots, key, order, go)) for key in "xyz"]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(holder, *waiters)
    assert order == ["h", "x", "y", "z"]


async def test_a_cancelled_waiter_takes_no_slot_with_it() -> None:
    slots = SendSlots(1)
    order: list[str] = []
    gate = asyncio.Event()
    holder = asyncio.create_task(_hold(slots, "a", order, gate))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(_hold(slots, "b", order, gate))
    await asyncio.sleep(0)
    waiter.cancel()
    gate.set()
    await holder
    await asyncio.gather(waiter, return_exceptions=True)
    async with asyncio.timeout(1):
        async with slots.slot("c"):
            assert slots.locked()
    assert not slots.locked() and order == ["a"]


async def test_a_slot_granted_to_a_waiter_cancelled_meanwhile_is_passed_on() -> None:
    slots = SendSlots(1)
    order: list[str] = []
    held = slots.slot("a")
    await held.__aenter__()
    go = asyncio.Event()
    go.set()
    doomed = asyncio.create_task(_hold(slots, "b", order, go))
    after = asyncio.create_task(_hold(slots, "c", order, go))
    await asyncio.sleep(0)
    await held.__aexit__(None, None, None)  # grants the slot to b, which has not run yet
    doomed.cancel()
    await asyncio.gather(doomed, return_exceptions=True)
    async with asyncio.timeout(1):
        await after
    assert order == ["c"] and not slots.locked()
