"""Issue 5, item 1: the bridge process killed (SIGKILL) in the middle of a burst.

500 numbered prompts over 10 sessions hit a bridge process; after 250 are acknowledged it is
killed with SIGKILL — no shutdown code runs, commits and sends are cut wherever they are. A new
process on the same database finishes the work. A Matrix user then reads every room's history:
every acknowledged prompt is there exactly once, each session's in the order it was posted, and
the prompts in flight at the kill (posted, never answered) are there at most once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

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

SESSIONS, PER_SESSION = 10, 50


@pytest.fixture(scope="module")
async def hs(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FaultStack]:
    async with fault_stack(tmp_path_factory.mktemp("fault-kill")) as stack:
        yield stack


async def test_sigkill_mid_burst_loses_and_doubles_nothing(
    hs: FaultStack, store_url: str, tmp_path: Path
) -> None:
    config = hs.bridge_config(store_url)
    first = await BridgeProcess(config, tmp_path, "first").start()
    second = BridgeProcess(config, tmp_path, "second")
    try:
        await first.wait_ready()
        burst = Burst(first.hook_url, SESSIONS, PER_SESSION)
        posting = asyncio.create_task(burst.run())
        await burst.wait_acked(SESSIONS * PER_SESSION // 2)

        burst.up.clear()  # posters hold still until a bridge is back
        first.kill()
        killed = time.monotonic()
        assert await first.wait_exit() == -9
        acked_before = len(burst.acked)

        await second.start()
        await second.wait_ready()
        ready = time.monotonic()
        burst.up.set()
        await asyncio.wait_for(posting, 120)
        all_posted = time.monotonic()

        await until_drained(second.config["database"], "the outbox drained after the restart", 120)
        seen = await read_back(hs.alice, burst)
        caught_up = time.monotonic()
    finally:
        await first.close()
        await second.close()

    problems = burst_problems(burst, seen)
    assert not problems, "\n".join(problems)
    # Unanswered: what was in flight at the kill, a post started while no bridge was up. Counted
    # once posting is over: a post is recorded when its request ends, and a request cut by the
    # kill may end after the kill is seen (counted then, some were missed and the test failed).
    unanswered = sum(p.status != 200 and p.started < ready for p in burst.posts)
    assert unanswered <= SESSIONS  # at most one per poster
    assert len(burst.acked) >= SESSIONS * PER_SESSION - unanswered
    shown = sum(len(v) for v in seen.values())
    report(
        "sigkill_mid_burst",
        store=store_url.split(":", 1)[0],
        acked=len(burst.acked),
        acked_before_kill=acked_before,
        in_flight_at_kill=unanswered,
        shown=shown,
        duplicates=0,
        restart_to_ready_s=round(ready - killed, 2),
        drained_after_last_post_s=round(caught_up - all_posted, 2),
    )
