"""The host runner's long-poll (issue 15) against a real bridge on real Synapse, SQLite and
Postgres: who may poll, what a bad body gets, and that a job reaches exactly its runner, again
and again until its result, through a bridge restart, and never twice once settled.

The runner here is the minimal poller of ``runner_poller.py`` (a client of the real bridge).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from claude_bridge.app import Bridge
from claude_bridge.control.runner_wire import INSTANCE_HEADER
from claude_bridge.store.runner_jobs import RunnerJob
from tests.e2e.conftest import HOOK_TOKEN, Stack, StartBridge
from tests.e2e.runner_helpers import OTHER, poller
from tests.e2e.runner_poller import Poller
from tests.e2e.test_foundation import _until

pytestmark = pytest.mark.e2e
__all__ = ["poller"]  # the fixture, from runner_helpers.py

SHARED = "hub-shared-secret-0123456789"
TOKENS = {
    "laptop": HOOK_TOKEN,
    "desk": OTHER,
    "hub": {"secret": SHARED, "role": "shared"},
}


def job(kind: str = "new", *, token: str = "laptop", host: str = "laptop") -> RunnerJob:
    return RunnerJob(
        id=uuid.uuid4().hex,
        token_name=token,
        host=host,
        kind=kind,
        session_id=str(uuid.uuid4()),
        requested_by="@admin:localhost",
        project="api",
        prompt="write the tests",
    )


async def test_bad_polls_get_clear_refusals(start_bridge: StartBridge, poller: Poller) -> None:
    await start_bridge(hooks={"tokens": TOKENS})
    assert (await poller.raw(poller.body(), token=""))[0] == 401
    status, answer = await poller.raw(poller.body(), token="not-a-token")
    assert status == 401 and "token" in answer["error"]
    status, answer = await poller.raw(poller.body(), token=SHARED)
    assert status == 403 and "shared" in answer["error"]
    assert (await poller.raw(None, data=b"{nope"))[0] == 400
    assert (await poller.raw([1, 2]))[0] == 400
    for bad, what in [
        ({"host": "Laptop!"}, "host"),
        ({"projects": ["../etc"]}, "`..` is not allowed"),
        ({"projects": ["/home/me/api"]}, "paths are not allowed"),
        ({"wait": "soon"}, "wait"),
        ({"results": [{"job_id": "x", "ok": "yes"}]}, "ok"),
        ({"sessions": [{"session_id": "not-a-uuid", "project": "api", "tmux": "t"}]}, "session_id"),
        ({"exits": [{"session_id": str(uuid.uuid4()), "status": 1.5}]}, "status"),
    ]:
        status, answer = await poller.raw(poller.body(**bad))
        assert status == 422, (bad, answer)
        assert what in answer["error"], (bad, answer)
    assert await poller.poll() == []  # and a good one is fine


async def test_a_job_is_redelivered_until_its_result_also_across_a_restart(
    start_bridge: StartBridge, poller: Poller
) -> None:
    bridge = await start_bridge(hooks={"tokens": TOKENS})
    stored = job()
    await bridge.control.runners.submit(stored)
    first = await poller.poll()
    assert [j["id"] for j in first] == [stored.id]
    assert first[0] == {**stored.wire()}
    assert [j["id"] for j in await poller.poll()] == [stored.id]  # no result yet: again

    await bridge.stop()  # the bridge goes away with the job sent but unsettled
    bridge = await start_bridge(hooks={"tokens": TOKENS})
    again = await poller.poll()
    assert [j["id"] for j in again] == [stored.id]  # once per answer, not duplicated

    assert await poller.poll(results=[{"job_id": stored.id, "ok": True, "error": None}]) == []
    assert await poller.poll() == []
    settled = await bridge.control.runners.jobs.get(stored.id)
    assert settled is not None and settled.state == "done"
    # A repeated result (its answer was lost) changes nothing.
    assert await poller.poll(results=[{"job_id": stored.id, "ok": False, "error": "x"}]) == []
    settled = await bridge.control.runners.jobs.get(stored.id)
    assert settled is not None and settled.state == "done"


async def test_a_long_poll_answers_when_a_job_comes(
    start_bridge: StartBridge, poller: Poller
) -> None:
    bridge = await start_bridge(hooks={"tokens": TOKENS})
    waiting = asyncio.create_task(poller.poll(wait=30))
    key = "runner:laptop:laptop"

    async def held() -> bool:
        return bridge.control.signals.holding(key) > 0

    await _until(held, "the runner's poll to be held")
    runner = bridge.control.runners.all()[0]
    assert bridge.control.runners.online(runner)
    stored = job()
    await bridge.control.runners.submit(stored)
    jobs = await asyncio.wait_for(waiting, 20)
    assert [j["id"] for j in jobs] == [stored.id]


async def test_another_token_or_host_never_sees_nor_settles_the_job(
    start_bridge: StartBridge, poller: Poller, stack: Stack
) -> None:
    bridge = await start_bridge(hooks={"tokens": TOKENS})
    other = Poller(poller.url, token=OTHER)  # same host name, another token
    elsewhere = Poller(poller.url, host="desktop")  # same token, another host
    try:
        stored = job()
        await bridge.control.runners.submit(stored)
        settle = [{"job_id": stored.id, "ok": False, "error": "mine now"}]
        assert await other.poll(results=settle) == []
        assert await elsewhere.poll(results=settle) == []
        assert [j["id"] for j in await poller.poll()] == [stored.id]  # still open, still ours
        found = await bridge.control.runners.jobs.get(stored.id)
        assert found is not None and found.state == "sent" and found.error is None
    finally:
        await other.close()
        await elsewhere.close()


async def test_the_newer_of_two_runners_wins_the_older_gets_409(
    start_bridge: StartBridge, poller: Poller
) -> None:
    bridge = await start_bridge(hooks={"tokens": TOKENS})
    twin = Poller(poller.url)
    try:
        older = asyncio.create_task(poller.raw(poller.body(wait=30)))

        async def held() -> bool:
            return bridge.control.signals.holding("runner:laptop:laptop") > 0

        await _until(held, "the first runner's poll to be held")
        assert await twin.poll() == []
        status, answer = await asyncio.wait_for(older, 20)
        assert status == 409 and "superseded" in answer["error"]
    finally:
        await twin.close()


@pytest.fixture
async def restarted(poller: Poller) -> AsyncIterator[Poller]:
    """The same runner started again: ``poller`` is its old process, each with its own id."""
    poller.headers[INSTANCE_HEADER] = "old-instance"
    p = Poller(poller.url)
    p.headers[INSTANCE_HEADER] = "restarted-instance"
    yield p
    await p.close()


async def test_a_restarted_runner_gets_in_once_the_old_one_is_offline(
    start_bridge: StartBridge, poller: Poller, restarted: Poller
) -> None:
    """A runner killed (no release) and started again is a new instance: refused while the old
    one is still online, let in after its window; the old one is then the outsider."""
    bridge = await start_bridge(hooks={"tokens": TOKENS})
    await poller.poll(wait=0)
    status, answer = await restarted.raw(restarted.body())
    assert status == 409 and "offline" in answer["error"]

    async def offline() -> bool:
        return not bridge.control.runners.online(bridge.control.runners.all()[0])

    await _until(offline, "the old runner offline past its window")
    assert await restarted.poll() == []
    assert (await poller.raw(poller.body()))[0] == 409


async def test_a_runner_that_released_its_host_is_replaced_at_once(
    start_bridge: StartBridge, poller: Poller, restarted: Poller
) -> None:
    """A clean stop: the last poll says ``release``; the host is offline at once (``new`` is
    refused, not queued) and the next runner's first poll is let in."""
    bridge = await start_bridge(hooks={"tokens": TOKENS})
    await poller.poll(wait=0)
    assert await poller.poll(wait=20, release=True) == []  # answered at once
    assert not bridge.control.runners.online(bridge.control.runners.all()[0])
    assert await restarted.poll() == []
    assert bridge.control.runners.online(bridge.control.runners.all()[0])


async def test_offline_after_the_grace(bridge: Bridge, poller: Poller) -> None:
    await poller.poll(wait=0)
    runner = bridge.control.runners.all()[0]
    assert runner.projects == ["api", "web"]
    assert bridge.control.runners.online(runner)
    assert not bridge.control.runners.online(runner, now=runner.last_seen + 3_001)
