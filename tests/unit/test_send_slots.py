"""The cap on concurrent sends (``slots.py``): a free slot goes to the thread served longest ago,
a cancelled waiter loses nobody's slot, and a slot granted to a cancelled waiter is passed on."""

from __future__ import annotations

import asyncio

from claude_bridge.slots import SendSlots


async def _hold(slots: SendSlots, key: str, order: list[str], release: asyncio.Event) -> None:
    async with slots.slot(key):
        order.append(key)
        await release.wait()


async def test_a_quiet_thread_goes_before_busy_ones_that_asked_first() -> None:
    slots = SendSlots(1)
    order: list[str] = []
    for busy in ("b1", "b2"):  # served a moment ago
        async with slots.slot(busy):
            pass
    gate = asyncio.Event()
    holder = asyncio.create_task(_hold(slots, "b1", order, gate))
    await asyncio.sleep(0)
    go = asyncio.Event()
    go.set()
    waiters = [asyncio.create_task(_hold(slots, key, order, go)) for key in ("b2", "b1", "quiet")]
    await asyncio.sleep(0)
    assert order == ["b1"] and slots.locked()
    gate.set()
    await asyncio.gather(holder, *waiters)
    # quiet was never served; b2 was served before b1 (whose turn was taken again just now).
    assert order == ["b1", "quiet", "b2", "b1"]


async def test_among_equals_first_come_first_served() -> None:
    slots = SendSlots(1)
    order: list[str] = []
    gate = asyncio.Event()
    holder = asyncio.create_task(_hold(slots, "h", order, gate))
    await asyncio.sleep(0)
    go = asyncio.Event()
    go.set()
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
