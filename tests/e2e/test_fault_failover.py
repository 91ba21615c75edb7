"""Issue 5, item 8: two bridge processes on one database.

Only the holder of the leader lock (``store/lock.py``) works; the other waits before it binds a
port or touches the schema, says whom it waits for, and takes over when the holder dies. The
burst test kills the active process with SIGKILL halfway through 200 prompts (10 sessions) and
checks from Matrix that the standby delivered the rest, and that nothing was shown twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from claude_bridge.store.lock import ADVISORY_KEY
from tests.conftest import create_pg_database, drop_pg_database
from tests.e2e.processes import (
    BridgeProcess,
    Burst,
    FaultStack,
    burst_problems,
    fault_stack,
    read_back,
    report,
    until_drained,
)

pytestmark = pytest.mark.e2e

SESSIONS, PER_SESSION = 10, 20  # item 1 (test_fault_kill.py) does the 500-event burst


@pytest.fixture(scope="module")
async def hs(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FaultStack]:
    async with fault_stack(tmp_path_factory.mktemp("fault-failover")) as stack:
        yield stack


async def test_standby_takes_over_when_the_active_bridge_is_killed(
    hs: FaultStack, store_url: str, tmp_path: Path
) -> None:
    config = hs.bridge_config(store_url)
    active = await BridgeProcess(config, tmp_path, "active").start()
    standby = BridgeProcess(config, tmp_path, "standby")
    try:
        await active.wait_ready()
        await standby.start()
        await standby.wait_for_log(f"waiting for the lock held by pid {active.pid} ")
        # Same config, same ports: the standby must not have bound (or tried to bind) them.
        assert not standby.logged("listening") and not standby.logged("bridge ready")

        burst = Burst(active.hook_url, SESSIONS, PER_SESSION)
        posting = asyncio.create_task(burst.run())
        await burst.wait_acked(SESSIONS * PER_SESSION // 2)
        burst.up.clear()
        active.kill()
        killed = time.monotonic()
        assert await active.wait_exit() == -9
        unanswered = len(burst.attempted) - len(burst.acked)

        await standby.wait_ready()
        took_over = time.monotonic()
        assert standby.logged("leader lock taken")
        burst.up.set()
        await asyncio.wait_for(posting, 120)
        all_posted = time.monotonic()

        await until_drained(standby.config["database"], "the outbox drained by the standby", 120)
        seen = await read_back(hs.alice, burst)
        caught_up = time.monotonic()
    finally:
        await active.close()
        await standby.close()

    problems = burst_problems(burst, seen)
    assert not problems, "\n".join(problems)
    report(
        "failover_two_processes",
        store=store_url.split(":", 1)[0],
        acked=len(burst.acked),
        in_flight_at_kill=unanswered,
        shown=sum(len(v) for v in seen.values()),
        duplicates=0,
        kill_to_standby_ready_s=round(took_over - killed, 2),
        drained_after_last_post_s=round(caught_up - all_posted, 2),
    )


async def test_a_waiting_standby_stops_cleanly_on_sigterm(
    hs: FaultStack, store_url: str, tmp_path: Path
) -> None:
    config = hs.bridge_config(store_url)
    active = await BridgeProcess(config, tmp_path, "active").start()
    standby = BridgeProcess(config, tmp_path, "standby")
    try:
        await active.wait_ready()
        await standby.start()
        await standby.wait_for_log("waiting for the lock held by")
        standby.terminate()
        assert await standby.wait_exit(15) == 0
        assert active.returncode is None  # the active one carries on
    finally:
        await standby.close()
        await active.close()
    assert await active.wait_exit() == 0


async def test_a_bridge_whose_lock_is_taken_stops(hs: FaultStack, tmp_path: Path) -> None:
    """Postgres: the lock lives in a session. When that session dies and someone else holds
    the lock by the time the bridge reconnects, the bridge must stop, not carry on beside it.
    (An flock cannot be taken from a living process: SQLite has no such case.)"""
    url = await create_pg_database()
    bridge = await BridgeProcess(hs.bridge_config(url), tmp_path).start()
    thief = await asyncpg.connect(url)
    try:
        await bridge.wait_ready()
        # Kill the bridge's lock session and queue for the lock in the same round trip, so the
        # thief is first in line when that session ends.
        await thief.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE application_name LIKE 'claude-bridge pid {bridge.pid} %';"
            f"SELECT pg_advisory_lock({ADVISORY_KEY})"
        )
        assert await bridge.wait_exit(30) == 14
        assert bridge.logged("the leader lock went to")
    finally:
        await thief.close()
        await bridge.close()
        await drop_pg_database(url)
