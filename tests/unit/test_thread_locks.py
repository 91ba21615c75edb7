"""The hook path's per-thread locks (``hooks/ingest.py``): one thread's events wait for each
other, other threads' do not, and nothing is kept once nobody holds or waits."""

from __future__ import annotations

import asyncio

import pytest

from claude_bridge.hooks.ingest import ThreadLocks
from claude_bridge.ids import ThreadID

A, B = ThreadID("a"), ThreadID("b")


async def test_one_thread_waits_another_does_not() -> None:
    locks = ThreadLocks()
    release = asyncio.Event()
    order: list[str] = []
    entered = {name: asyncio.Event() for name in ("a1", "a2", "b1")}

    async def hold(thread: ThreadID, name: str) -> None:
        async with locks.hold(thread):
            order.append(name)
            entered[name].set()
            await release.wait()

    first = asyncio.create_task(hold(A, "a1"))
    second = asyncio.create_task(hold(A, "a2"))
    other = asyncio.create_task(hold(B, "b1"))
    await asyncio.wait_for(asyncio.gather(entered["a1"].wait(), entered["b1"].wait()), 5)
    assert order == ["a1", "b1"]  # a2 waits for a1; b1 did not wait for thread a
    release.set()
    await asyncio.gather(first, second, other)
    assert order == ["a1", "b1", "a2"]
    assert len(locks) == 0


async def test_a_cancelled_waiter_leaves_nothing_behind() -> None:
    locks = ThreadLocks()
    held = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with locks.hold(A):
            held.set()
            await release.wait()

    async def waiter() -> None:
        async with locks.hold(A):
            pytest.fail("a cancelled waiter must not get the lock")

    task = asyncio.create_task(holder())
    await held.wait()
    waiting = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    await task
    assert len(locks) == 0
