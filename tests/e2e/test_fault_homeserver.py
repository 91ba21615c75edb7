"""Issue 5, item 2: the homeserver down (Synapse stopped, held down, started) while hooks arrive.

Claude Code never waits for Synapse: hooks are acknowledged from the database alone, so their
latency through the outage stays what it always is. Delivery backs off meanwhile; the recovery
watch (``matrix/recovery.py``) sees Synapse answer again, resumes delivery at once (instead of at
the end of a backoff of up to 30 s) and pings the appservice. The backlog then drains in order,
with nothing shown twice — including a send that Synapse stored just before it went down but
never answered: Synapse forgets transaction ids when it restarts, so the bridge looks the event
up by its transaction id (``matrix/txn_lookup.py``) instead of sending it again.

The issue asks for 30 s; the default suite holds Synapse down for 15 s. That exercises the same
paths in half the time, and it is chosen so the test fails without the resume: Synapse is back
~16-19 s after delivery's first failure, while its backoff (0.25 s doubling) would next retry at
31.75 s, so without the resume no backoff is cut short. (30 s happens to end right at that
retry.) ``CLAUDE_BRIDGE_FAULT_HS_OUTAGE=30`` runs the issue's 30 s. How soon delivery resumes and
how fast hooks are acknowledged meanwhile are figures that ``bench/reliability.py`` holds to
their targets; this test asserts only what holds on a loaded machine.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from claude_bridge.store import Outbox, create_database
from tests.e2e.processes import (
    BridgeProcess,
    Burst,
    FaultStack,
    backlog,
    burst_problems,
    count,
    env_seconds,
    fault_stack,
    join_thread_room,
    mark,
    percentile,
    prompt_payload,
    read_back,
    report,
    room_marks,
    until,
    until_drained,
)
from tests.matrix_client import MatrixTestClient

pytestmark = pytest.mark.e2e

OUTAGE = env_seconds("CLAUDE_BRIDGE_FAULT_HS_OUTAGE", 15.0)
SESSIONS, PACE = 5, 0.25


@pytest.fixture(scope="module")
async def hs(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FaultStack]:
    async with fault_stack(tmp_path_factory.mktemp("fault-hs")) as stack:
        yield stack


async def test_homeserver_outage_acks_fast_and_drains_in_order(
    hs: FaultStack, tmp_path: Path
) -> None:
    db_url = f"sqlite:{tmp_path / 'bridge.db'}"
    bridge = await BridgeProcess(hs.bridge_config(db_url), tmp_path).start()
    try:
        await bridge.wait_ready()
        per_session = int((OUTAGE + 6) / PACE)
        burst = Burst(bridge.hook_url, SESSIONS, per_session, pace=PACE)
        posting = asyncio.create_task(burst.run())
        await burst.wait_acked(40)  # rooms exist and delivery is busy when Synapse goes

        await hs.synapse.stop()
        down = time.monotonic()
        await asyncio.sleep(OUTAGE)  # hold the outage while hooks keep arriving
        restarting = time.monotonic()
        await hs.synapse.start()
        up, up_ms = time.monotonic(), int(time.time() * 1000)
        stranded = await backlog(db_url, up_ms)

        async def delivering() -> bool:
            sql = "SELECT COUNT(*) FROM hook_event WHERE sent_at >= $1"
            return await count(db_url, sql, up_ms) > 0

        await until(delivering, "delivery resumed after the restart", 60)
        resumed_after = time.monotonic() - up

        async def outage_backlog_sent() -> bool:
            return await backlog(db_url, up_ms) == 0

        await until(outage_backlog_sent, "the events queued during the outage sent", 120)
        drained_after = time.monotonic() - up
        await asyncio.wait_for(posting, 120)

        await until_drained(db_url, "the outbox drained", 120)
        seen = await read_back(hs.alice, burst)
        assert bridge.returncode is None, bridge.tail()
    finally:
        await bridge.close()

    during = burst.ack_seconds(down, restarting)
    problems = burst_problems(burst, seen)
    assert not problems, "\n".join(problems)
    assert set(burst.statuses()) == {200}  # the bridge itself never went away
    assert len(burst.acked) == SESSIONS * per_session
    assert during, "no hook was posted while Synapse was down"
    # Resumed by the recovery watch, not at the end of each worker's backoff (up to 30 s). How
    # soon (resumed_after) and how fast hooks were acknowledged meanwhile are speed figures:
    # `bench/reliability.py` holds them to their targets.
    assert bridge.logged("database and homeserver answer again")
    assert bridge.logged("backoff cut short: the outage is over")
    assert bridge.logged("pinged the appservice")
    report(
        "homeserver_outage",
        outage_s=round(restarting - down, 1),
        synapse_restart_s=round(up - restarting, 1),
        hooks_during_outage=len(during),
        ack_p50_ms=round(percentile(during, 50) * 1000, 1),
        ack_p99_ms=round(percentile(during, 99) * 1000, 1),
        backlog_at_restart=stranded,
        first_delivery_after_restart_s=round(resumed_after, 2),
        backlog_sent_after_restart_s=round(drained_after, 2),
        acked=len(burst.acked),
        duplicates=0,
    )


async def test_a_send_the_homeserver_stored_before_restarting_is_not_sent_again(
    hs: FaultStack, tmp_path: Path
) -> None:
    """Synapse stored a message but its answer never came back, then Synapse restarted and so
    forgot the transaction id. Retrying the same ``PUT …/send/…/cb.<id>.0`` would now make a
    second event; the bridge finds the first one in the room instead."""
    db_url = f"sqlite:{tmp_path / 'bridge.db'}"
    config = hs.bridge_config(db_url)
    first = await BridgeProcess(config, tmp_path, "first").start()
    try:
        await first.wait_ready()
        burst = Burst(first.hook_url, 1, 1)
        await burst.run()
        session = burst.session_ids[0]
        room = await join_thread_room(hs.alice, session)

        await until_drained(db_url, "the first prompt delivered")
        first.terminate()
        assert await first.wait_exit() == 0
    finally:
        await first.close()

    # The next prompt, stored and acknowledged, and its message already in Synapse's room:
    # the state a bridge killed between Synapse's commit and its answer leaves behind.
    db = create_database(db_url)
    await db.start()
    text = mark(burst.tag, 0, 1)
    hook_event = await Outbox(db).append(
        session.lower(), "UserPromptSubmit", json.dumps(prompt_payload(session, text)), "laptop"
    )
    await db.stop()
    ghost = MatrixTestClient(
        hs.synapse.url,
        f"@claude-{session.lower()}:localhost",
        config["appservice"]["as_token"],
        appservice=True,
    )
    try:
        await ghost.request(
            "PUT",
            f"/_matrix/client/v3/rooms/{room}/send/m.room.message/cb.{hook_event}.0",
            body={"msgtype": "m.text", "body": text},
        )
    finally:
        await ghost.close()
    await hs.synapse.stop()  # forgets every transaction id
    await hs.synapse.start()

    second = await BridgeProcess(config, tmp_path, "second").start()
    try:
        await second.wait_ready()
        await until_drained(db_url, "the second prompt handled")
    finally:
        await second.close()
    assert await room_marks(hs.alice, room, burst.tag) == [(0, 0), (0, 1)]
    assert second.logged("already in the room, not sent again")
