"""The recovery watch against a scripted homeserver and database, and delivery's resumable backoff.

What must hold: a real outage (a probe failed) ends with delivery resumed and one ping; a failure
that is not an outage resumes nothing; a transaction the endpoint could not store is answered
with a ping once the database answers, and pings that do not help are spaced out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import SimpleNamespace
from typing import Any

from claude_bridge.delivery import Delivery
from claude_bridge.matrix.client import MatrixError
from claude_bridge.matrix.recovery import PING_GAP_MAX, RecoveryWatch

INTERVAL = 0.01


class Scripted:
    """The homeserver and the database, each up or down, counting what the watch asks."""

    def __init__(self) -> None:
        self.homeserver_up = True
        self.database_up = True
        self.pings: list[float] = []
        self.resumed = 0

    async def versions(self) -> dict[str, Any]:
        if not self.homeserver_up:
            raise MatrixError("GET /versions: connection refused")
        return {}

    async def ping(self, appservice_id: str, txn_id: str | None = None) -> int:
        assert appservice_id == "claude" and txn_id and txn_id.startswith("recovery-")
        if not self.homeserver_up:
            raise MatrixError("POST /ping: connection refused")
        self.pings.append(time.monotonic())
        return 3

    async def select_1(self) -> int:
        if not self.database_up:
            raise OSError("connection refused")
        return 1

    def resume(self) -> None:
        self.resumed += 1


async def _watch(world: Scripted) -> RecoveryWatch:
    watch = RecoveryWatch(
        world,  # type: ignore[arg-type]
        "claude",
        probe_db=world.select_1,
        on_recovered=world.resume,
        interval=INTERVAL,
    )
    await watch.start()
    return watch


async def _until(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(INTERVAL)


async def _settled(watch: RecoveryWatch) -> None:
    """Until the watch has nothing left to do (waiting for the next failure)."""
    await _until(lambda: not watch._wake.is_set())
    await asyncio.sleep(5 * INTERVAL)


async def test_an_outage_ends_with_delivery_resumed_and_one_ping() -> None:
    world = Scripted()
    watch = await _watch(world)
    try:
        world.homeserver_up = False
        watch.failed()
        watch.failed()  # many workers report the same outage
        await asyncio.sleep(10 * INTERVAL)  # several probes, all failing
        assert world.resumed == 0 and world.pings == []
        world.homeserver_up = True
        await _until(lambda: world.pings)
        await _settled(watch)
        assert world.resumed == 1 and len(world.pings) == 1
    finally:
        await watch.stop()


async def test_a_database_outage_counts_too() -> None:
    world = Scripted()
    watch = await _watch(world)
    try:
        world.database_up = False
        watch.failed()
        await asyncio.sleep(10 * INTERVAL)
        assert world.resumed == 0
        world.database_up = True
        await _until(lambda: world.resumed)
        await _settled(watch)
        assert world.resumed == 1 and len(world.pings) == 1
    finally:
        await watch.stop()


async def test_a_failure_that_is_not_an_outage_resumes_nothing() -> None:
    world = Scripted()
    watch = await _watch(world)
    try:
        watch.failed()  # e.g. one 502 from a proxy; the probes pass at once
        await _settled(watch)
        assert world.resumed == 0 and world.pings == []
    finally:
        await watch.stop()


async def test_an_unstored_transaction_is_answered_with_a_ping_once_the_database_is_back() -> None:
    world = Scripted()
    world.database_up = False
    watch = await _watch(world)
    try:
        watch.transaction_failed()
        await asyncio.sleep(10 * INTERVAL)
        assert world.pings == []  # a ping now would only make Synapse back off further
        world.database_up = True
        await _until(lambda: world.pings)
        await _settled(watch)
        assert len(world.pings) == 1
    finally:
        await watch.stop()


async def test_pings_that_do_not_help_are_spaced_out() -> None:
    world = Scripted()
    watch = await _watch(world)
    try:
        # The same transaction fails to store right after every ping (a poison transaction).
        gaps = []
        for _ in range(4):
            before = len(world.pings)
            watch.transaction_failed()
            await _until(lambda before=before: len(world.pings) > before)
            gaps.append(watch._ping_gap)
        assert gaps == sorted(gaps) and gaps[-1] > gaps[0]
        assert gaps[-1] <= PING_GAP_MAX
    finally:
        await watch.stop()


async def test_resume_ends_a_delivery_backoff_at_once() -> None:
    # Nothing is delivered: the stores are never read (an outbox without a database will do).
    outbox: Any = SimpleNamespace(db=None)
    delivery = Delivery(outbox, None, None, None, lambda e, c: [])  # type: ignore[arg-type]
    backoff = 600.0
    waiting = asyncio.create_task(delivery._backoff(backoff))
    await asyncio.sleep(0)
    assert not waiting.done()
    delivery.resume()
    # Ended by the resume: the backoff itself would take ten minutes.
    await asyncio.wait_for(waiting, backoff / 10)
    # A later backoff waits again (resume is not sticky).
    again = asyncio.create_task(delivery._backoff(backoff))
    await asyncio.sleep(0.05)
    assert not again.done()
    again.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await again
    short = asyncio.create_task(delivery._backoff(0.05))
    await asyncio.wait_for(short, backoff / 10)
