"""The homeserver misbehaves: retried transactions, rate limits, requests that never answer.

Issue 5, items 4–6, against real Synapse:

4. Synapse retries a transaction (same id, or the same events under a new id): the inbound
   handlers run once per event.
5. A rate-limited registration: 429 ``retry_after_ms`` is honoured — every message arrives once,
   in order, each retry waits at least what Synapse asked, and there is no 429 storm.
6. A hung homeserver request: bounded by ``homeserver.request_timeout``, other threads keep
   flowing, the hung send is retried and lands once (same transaction id).

And a room that could not be put into its project's space is put there at a later event.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from ruamel.yaml import YAML

from claude_bridge.app import Bridge, build
from claude_bridge.config import parse_config
from claude_bridge.devenv.synapse import LocalSynapse
from claude_bridge.matrix.inbound_events import Inbound
from claude_bridge.registration import build_registration, new_token
from claude_bridge.router import SPACE_LINK_RETRY
from tests.e2e.conftest import HOOK_TOKEN, HookPoster, Stack, free_port, hook_payload, new_session
from tests.e2e.processes import report
from tests.e2e.proxy import HomeserverProxy
from tests.matrix_client import user_client

pytestmark = pytest.mark.e2e


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 60.0) -> Any:
    """Poll bridge state until ``check`` is truthy (a deadline, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
    return result


async def room_of(bridge: Bridge, session: str) -> str:
    async def room() -> str | None:
        thread = await bridge.threads.get(session.lower())
        return thread.room_id if thread else None

    return str(await until(room, f"room of {session}"))


async def drained(bridge: Bridge, session: str | None = None) -> bool:
    query = "SELECT COUNT(*) FROM hook_event WHERE state='pending'"
    if session is None:
        return not await bridge.db.fetchval(query)
    return not await bridge.db.fetchval(query + " AND thread_id=$1", session.lower())


def bodies(timeline: list[dict[str, Any]], ghost: str) -> list[str]:
    return [
        e["content"].get("body", "")
        for e in timeline
        if e["type"] == "m.room.message" and e["sender"] == ghost
    ]


@pytest.fixture
async def proxy(stack: Stack) -> AsyncIterator[HomeserverProxy]:
    proxy = await HomeserverProxy(stack.synapse.url).start()
    yield proxy
    await proxy.stop()


# --- 4: Synapse retries a transaction ------------------------------------------------------


async def test_a_replayed_transaction_is_processed_once(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    calls: Counter[str] = Counter()

    async def count(event: Inbound) -> None:
        calls[event.event_id] += 1

    bridge.inbound.register(count)
    session = new_session()
    assert (await hooks.post(hook_payload("SessionStart", session)))[0] == 200
    room_id = await room_of(bridge, session)
    alice = stack.users["alice"]
    await alice.join(room_id)
    event_id = await alice.send_text(room_id, "please run the tests again")

    async def handled(eid: str) -> bool:
        return calls[eid] >= 1

    await until(lambda: handled(event_id), "alice's message handled")
    # Replay what Synapse sent, exactly: the stored events of that transaction, by hand.
    txn_id = await bridge.db.fetchval("SELECT txn_id FROM matrix_event WHERE event_id=$1", event_id)
    rows = await bridge.db.fetch("SELECT event FROM matrix_event WHERE txn_id=$1", txn_id)
    body = json.dumps({"events": [json.loads(r["event"]) for r in rows]})
    base = f"{stack.config['appservice']['address']}/_matrix/app/v1/transactions"
    auth = {"Authorization": f"Bearer {stack.config['appservice']['hs_token']}"}
    async with aiohttp.ClientSession() as http:
        for txn in (txn_id, txn_id, f"{txn_id}.again"):
            async with http.put(f"{base}/{txn}", data=body, headers=auth) as resp:
                assert resp.status == 200, await resp.text()
    # The inbox is processed in order: once a later message is handled, a second run of the
    # replayed one would already have happened.
    sentinel = await alice.send_text(room_id, "sentinel")
    await until(lambda: handled(sentinel), "the sentinel handled")
    assert calls[event_id] == 1

    async def idle() -> bool:
        return await bridge.matrix_events.count_unprocessed() == 0

    await until(idle, "the inbox processed")
    assert calls[event_id] == 1


# --- 5: rate limited -----------------------------------------------------------------------

RATE = {"per_second": 2, "burst_count": 3}


@pytest.fixture(scope="module")
async def limited(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    """A Synapse of its own with tight ``rc_message`` and a ``rate_limited: true`` registration."""
    workdir = tmp_path_factory.mktemp("limited")
    as_port, hook_port, synapse_port = free_port(), free_port(), free_port()
    config: dict[str, Any] = {
        "homeserver": {"address": f"http://127.0.0.1:{synapse_port}", "domain": "localhost"},
        "appservice": {"port": as_port, "address": f"http://127.0.0.1:{as_port}",
                       "as_token": new_token(), "hs_token": new_token()},
        "hooks": {"listen": f"127.0.0.1:{hook_port}", "tokens": {"laptop": HOOK_TOKEN}},
        "bridge": {"permissions": {"@alice:localhost": "operator"}},
    }  # fmt: skip
    registration = build_registration(parse_config(config))
    registration["rate_limited"] = True
    YAML().dump(registration, workdir / "registration.yaml")
    synapse = LocalSynapse(
        workdir / "synapse",
        port=synapse_port,
        app_service_config_files=[workdir / "registration.yaml"],
        extra_config={"rc_message": RATE},
    )
    await synapse.start()
    alice = await user_client(synapse, "alice")
    try:
        yield {"config": config, "synapse": synapse, "alice": alice}
    finally:
        await alice.close()
        await synapse.stop()


# Retry timing is delivery's, whatever the store: one store keeps the suite short.
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_rate_limits_are_honoured(
    limited: dict[str, Any], store_url: str, tmp_path: Path
) -> None:
    synapse: LocalSynapse = limited["synapse"]
    proxy = await HomeserverProxy(synapse.url).start()
    config = {**limited["config"], "database": store_url}
    config["homeserver"] = {**config["homeserver"], "address": proxy.url}
    bridge = build(parse_config(config), tmp_path)
    await bridge.start()
    hooks = HookPoster(f"http://{config['hooks']['listen']}")
    try:
        session = new_session()
        burst = [f"burst prompt {i:02d}" for i in range(8)]
        started = time.monotonic()
        for name, extra in [("SessionStart", {}), *(("UserPromptSubmit", {"prompt": p}) for p in burst)]:  # fmt: skip
            assert (await hooks.post(hook_payload(name, session, **extra)))[0] == 200
        room_id = await room_of(bridge, session)
        await until(lambda: drained(bridge), "the burst delivered", timeout=60)
        elapsed = time.monotonic() - started

        alice = limited["alice"]
        await alice.join(room_id)
        ghost = f"@claude-{session}:localhost"
        shown = [b for b in bodies(await alice.messages(room_id), ghost) if "burst prompt" in b]
        assert [re.search(r"burst prompt \d+", b)[0] for b in shown] == burst  # type: ignore[index]

        sends = [r for r in proxy.log if r.method == "PUT" and "/rooms/" in r.path]
        # A project-space link refused with 429 is not retried on its own: it is made again at
        # the thread's next event, at most once a minute (tests/e2e/test_appservice_queries.py
        # and the router's throttle test); delivery's own sends are what this test is about.
        link = [r for r in sends if "/state/m.space." in r.path]
        limited_ = [r for r in sends if r.status == 429 and r not in link]
        ok = [r for r in sends if r.status == 200]
        assert limited_, "the homeserver never rate-limited: the test proves nothing"
        # Every 429 was waited out: the retry of that request came after retry_after_ms.
        for hit in limited_:
            retry = next(r for r in sends if r.path == hit.path and r.at > hit.at)
            assert retry.at - hit.at >= (hit.retry_after_ms or 0) / 1000 - 0.02, (hit, retry)
        # No storm: at most one 429 per request beyond the burst allowance.
        assert len(limited_) <= len(ok) - RATE["burst_count"], (len(limited_), len(ok))
        assert elapsed >= (len(ok) - RATE["burst_count"]) / RATE["per_second"] * 0.8
        retries = await bridge.db.fetchval("SELECT SUM(attempts) FROM hook_event")
        assert retries == len(limited_)
        print(f"rate limit: {len(ok)} sends, {len(limited_)} answered 429, {elapsed:.1f}s")
    finally:
        await hooks.close()
        await bridge.stop()
        await proxy.stop()


# --- 6: a homeserver request that never answers ----------------------------------------------


async def test_other_threads_flow_while_a_send_hangs(
    stack: Stack, start_bridge: Any, hooks: HookPoster, proxy: HomeserverProxy
) -> None:
    """One thread's send gets no answer; another thread's events are delivered meanwhile. The
    request timeout is far beyond the test's waits, so the hung send is still hung throughout."""
    bridge: Bridge = await start_bridge(homeserver={"address": proxy.url, "request_timeout": 600})
    hung, other = new_session(), new_session()
    for session in (hung, other):
        assert (await hooks.post(hook_payload("SessionStart", session)))[0] == 200
    hung_room = await room_of(bridge, hung)
    await until(lambda: drained(bridge), "both rooms ready", timeout=60)

    # Synapse gets the send and stores the message, but its answer is held back.
    rule = proxy.hang(method="PUT", path=f"/rooms/{re.escape(hung_room)}/send/", forward=True, times=1)  # fmt: skip
    status, _ = await hooks.post(hook_payload("UserPromptSubmit", hung, prompt="the hung prompt"))
    assert status == 200
    await proxy.wait_holding(rule, timeout=60)
    started = time.monotonic()
    for i in range(5):
        prompt = f"other thread {i}"
        assert (await hooks.post(hook_payload("UserPromptSubmit", other, prompt=prompt)))[0] == 200
    await until(lambda: drained(bridge, other), "the other thread delivered", timeout=120)
    other_done = time.monotonic() - started
    assert rule.holding == 1 and not await drained(bridge, hung)  # still hung meanwhile

    proxy.release(rule)  # the held answer comes back: the hung prompt is sent, once
    await until(lambda: drained(bridge, hung), "the hung prompt answered", timeout=60)
    admin = stack.users["admin"]
    await admin.join(hung_room)
    ghost = f"@claude-{hung.lower()}:localhost"
    shown = [b for b in bodies(await admin.messages(hung_room), ghost) if "the hung prompt" in b]
    assert len(shown) == 1
    report("hung_send_other_threads", other_thread_5_prompts_s=round(other_done, 2))


async def test_a_hung_send_times_out_is_retried_and_lands_once(
    stack: Stack, start_bridge: Any, hooks: HookPoster, proxy: HomeserverProxy
) -> None:
    timeout = 5.0
    bridge: Bridge = await start_bridge(
        homeserver={"address": proxy.url, "request_timeout": timeout}
    )
    hung = new_session()
    assert (await hooks.post(hook_payload("SessionStart", hung)))[0] == 200
    hung_room = await room_of(bridge, hung)
    await until(lambda: drained(bridge), "the room ready", timeout=60)

    # Synapse gets the send and stores the message, but its answer never comes back.
    send = f"/rooms/{re.escape(hung_room)}/send/"
    rule = proxy.hang(method="PUT", path=send, forward=True, times=1)
    before = len(proxy.log)
    started = time.monotonic()
    status, _ = await hooks.post(hook_payload("UserPromptSubmit", hung, prompt="the hung prompt"))
    assert status == 200
    await proxy.wait_holding(rule, timeout=60)
    await until(lambda: drained(bridge, hung), "the hung event retried", timeout=120)
    hung_done = time.monotonic() - started
    assert hung_done >= timeout  # not before the request timeout gave up on the first try
    row = await bridge.db.fetchrow(
        "SELECT attempts, last_error, state FROM hook_event WHERE thread_id=$1 "
        "AND event_name='UserPromptSubmit'",
        hung.lower(),
    )
    assert row["state"] == "sent" and row["attempts"] == 1
    # The retry looked the send up in the room (txn_lookup) or sent it again under the same
    # transaction id: either way, one transaction id, one event.
    tries = [r.path for r in proxy.log[before:] if r.method == "PUT" and re.search(send, r.path)]
    assert len(set(tries)) == 1, tries
    admin = stack.users["admin"]
    await admin.join(hung_room)
    ghost = f"@claude-{hung.lower()}:localhost"
    shown = [b for b in bodies(await admin.messages(hung_room), ghost) if "the hung prompt" in b]
    assert len(shown) == 1
    report("hung_send_retried", request_timeout_s=timeout, delivered_after_s=round(hung_done, 2))


HUNG_THREADS = 16  # Delivery's global cap on concurrent sends


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_many_hung_threads_do_not_starve_the_others(
    stack: Stack, start_bridge: Any, hooks: HookPoster, proxy: HomeserverProxy
) -> None:
    """As many hung rooms as the send cap: a healthy thread gets through after the slots'
    patience (2 s), not after the request timeout — set far beyond the test's waits here, so a
    healthy event delivered at all got past the hung sends while they still held on."""
    bridge: Bridge = await start_bridge(homeserver={"address": proxy.url, "request_timeout": 600})
    sessions = [new_session() for _ in range(HUNG_THREADS + 1)]
    healthy = sessions.pop()
    for session in [*sessions, healthy]:
        assert (await hooks.post(hook_payload("SessionStart", session)))[0] == 200
    rooms = [await room_of(bridge, s) for s in sessions]
    await until(lambda: drained(bridge), "all rooms ready", timeout=120)

    hung_sends = "/rooms/(" + "|".join(map(re.escape, rooms)) + ")/send/"
    rule = proxy.hang(method="PUT", path=hung_sends)
    for session in sessions:
        assert (await hooks.post(hook_payload("UserPromptSubmit", session, prompt="stuck")))[
            0
        ] == 200
    await proxy.wait_holding(rule, HUNG_THREADS, timeout=60)
    latencies = []
    for i in range(5):
        sent = time.monotonic()
        prompt = f"healthy {i}"
        assert (await hooks.post(hook_payload("UserPromptSubmit", healthy, prompt=prompt)))[
            0
        ] == 200
        await until(lambda: drained(bridge, healthy), f"healthy event {i}", timeout=120)
        latencies.append(time.monotonic() - sent)
    # Every hung send is the first try, still held: nothing timed out, nothing was retried.
    assert rule.holding == HUNG_THREADS and rule.matched == HUNG_THREADS
    proxy.release(rule)
    await until(lambda: drained(bridge), "the hung threads delivered after release", timeout=120)
    report(
        "hung_threads_healthy_one",
        hung_threads=HUNG_THREADS,
        first_event_s=round(latencies[0], 2),
        slowest_event_s=round(max(latencies), 2),
        later_events_max_s=round(max(latencies[1:]), 2),
    )


# --- a failed project-space link ---------------------------------------------------------------


async def test_a_failed_space_link_is_tried_again_at_a_later_event_once_a_minute(
    stack: Stack, start_bridge: Any, hooks: HookPoster, proxy: HomeserverProxy
) -> None:
    """A link the homeserver failed is tried again at a later event of the thread, but at most
    once a minute (``SPACE_LINK_RETRY``): the router's clock is moved on instead of waited for."""
    bridge: Bridge = await start_bridge(homeserver={"address": proxy.url})
    now = [1000.0]
    bridge.router.clock = lambda: now[0]
    project = f"/home/dev/projects/relinked-{new_session()[:8]}"
    session = new_session()
    thread_id = session.lower()
    child_path = r"/state/m\.space\.child/"
    child = proxy.hang(method="PUT", path=child_path, times=1)
    assert (await hooks.post(hook_payload("SessionStart", session, cwd=project)))[0] == 200
    room = await room_of(bridge, session)
    await proxy.wait_holding(child, timeout=60)
    proxy.release(child)  # the space's half of the link fails: 504, worth another try

    def link_tries() -> int:
        forwarded = [r for r in proxy.log if r.method == "PUT" and re.search(child_path, r.path)]
        return child.matched + len(forwarded)

    async def linked() -> bool:
        thread = await bridge.threads.get(thread_id)
        assert thread is not None
        return thread.space_linked_at is not None

    async def prompt(text: str) -> None:
        assert (await hooks.post(hook_payload("UserPromptSubmit", session, prompt=text)))[0] == 200
        await until(lambda: drained(bridge, session), f"{text!r} delivered", timeout=60)

    await until(lambda: drained(bridge, session), "the session start delivered", timeout=60)
    assert not await linked() and link_tries() == 1

    now[0] += SPACE_LINK_RETRY - 1  # within the minute: the event goes out, no new try
    await prompt("still within the minute")
    assert not await linked() and link_tries() == 1

    now[0] += 1  # a minute after the failed try: the next event tries again, and links
    await prompt("a minute later")
    await until(linked, "the link made at the next event", timeout=60)
    assert link_tries() == 2
    now[0] += SPACE_LINK_RETRY  # linked: no more tries, however late
    await prompt("linked already")
    assert link_tries() == 2

    space = await bridge.db.fetchval(
        "SELECT room_id FROM project_space WHERE project_key=$1", project
    )
    admin = stack.users["admin"]
    await admin.join(space)
    children = [
        s["state_key"] for s in await admin.room_state(space) if s["type"] == "m.space.child"
    ]
    assert children == [room]
    await admin.join(room)
    parents = [
        s["state_key"] for s in await admin.room_state(room) if s["type"] == "m.space.parent"
    ]
    assert parents == [space]
