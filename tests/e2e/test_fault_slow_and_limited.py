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

from claude_bridge.app import Bridge
from claude_bridge.config import parse_config
from claude_bridge.devenv.synapse import LocalSynapse
from claude_bridge.registration import build_registration, new_token
from claude_bridge.store.inbox import InboxEvent
from tests.e2e.conftest import HOOK_TOKEN, HookPoster, Stack, free_port, hook_payload, new_session
from tests.e2e.proxy import HomeserverProxy

pytestmark = pytest.mark.e2e


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30.0) -> Any:
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

    async def count(event: InboxEvent) -> None:
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
        return await bridge.inbox.count_unprocessed() == 0

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
    alice = await synapse.user_client("alice")
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
    bridge = Bridge(parse_config(config), tmp_path)
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
        limited_ = [r for r in sends if r.status == 429]
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


async def test_a_hung_send_times_out_is_retried_and_lands_once(
    stack: Stack, start_bridge: Any, hooks: HookPoster, proxy: HomeserverProxy
) -> None:
    bridge: Bridge = await start_bridge(homeserver={"address": proxy.url, "request_timeout": 2})
    hung, other = new_session(), new_session()
    for session in (hung, other):
        assert (await hooks.post(hook_payload("SessionStart", session)))[0] == 200
    hung_room = await room_of(bridge, hung)
    await until(lambda: drained(bridge), "both rooms ready")

    # Synapse gets the send and stores the message, but its answer never comes back.
    rule = proxy.hang(method="PUT", path=f"/rooms/{re.escape(hung_room)}/send/", forward=True, times=1)  # fmt: skip
    started = time.monotonic()
    status, _ = await hooks.post(hook_payload("UserPromptSubmit", hung, prompt="the hung prompt"))
    assert status == 200
    await proxy.wait_holding(rule)
    for i in range(5):
        prompt = f"other thread {i}"
        assert (await hooks.post(hook_payload("UserPromptSubmit", other, prompt=prompt)))[0] == 200
    await until(lambda: drained(bridge, other), "the other thread delivered")
    other_done = time.monotonic() - started
    assert rule.holding == 1 and not await drained(bridge, hung)  # still hung meanwhile
    assert other_done < 2.0

    await until(lambda: drained(bridge, hung), "the hung event retried", timeout=20)
    hung_done = time.monotonic() - started
    assert 2.0 <= hung_done < 6.0, hung_done
    row = await bridge.db.fetchrow(
        "SELECT attempts, last_error, state FROM hook_event WHERE thread_id=$1 "
        "AND event_name='UserPromptSubmit'",
        hung.lower(),
    )
    assert row["state"] == "sent" and row["attempts"] == 1
    admin = stack.users["admin"]
    await admin.join(hung_room)
    ghost = f"@claude-{hung.lower()}:localhost"
    shown = [b for b in bodies(await admin.messages(hung_room), ghost) if "the hung prompt" in b]
    assert len(shown) == 1  # the retry reused the transaction id: Synapse answered with the same
    print(f"hung send: other thread done after {other_done:.2f}s, hung one after {hung_done:.2f}s")


HUNG_THREADS = 16  # Delivery's global cap on concurrent sends


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_many_hung_threads_do_not_starve_the_others(
    stack: Stack, start_bridge: Any, hooks: HookPoster, proxy: HomeserverProxy
) -> None:
    """As many hung rooms as the send cap: a healthy thread waits at most the slots' patience
    (2 s), not the request timeout (6 s here, 30 s by default) — and not again on every retry."""
    timeout = 6.0
    bridge: Bridge = await start_bridge(
        homeserver={"address": proxy.url, "request_timeout": timeout}
    )
    sessions = [new_session() for _ in range(HUNG_THREADS + 1)]
    healthy = sessions.pop()
    for session in [*sessions, healthy]:
        assert (await hooks.post(hook_payload("SessionStart", session)))[0] == 200
    rooms = [await room_of(bridge, s) for s in sessions]
    await until(lambda: drained(bridge), "all rooms ready", timeout=60)

    rule = proxy.hang(method="PUT", path="/rooms/(" + "|".join(map(re.escape, rooms)) + ")/send/")
    for session in sessions:
        assert (await hooks.post(hook_payload("UserPromptSubmit", session, prompt="stuck")))[
            0
        ] == 200
    await proxy.wait_holding(rule, HUNG_THREADS)
    latencies = []
    for i in range(5):
        sent = time.monotonic()
        prompt = f"healthy {i}"
        assert (await hooks.post(hook_payload("UserPromptSubmit", healthy, prompt=prompt)))[
            0
        ] == 200
        await until(lambda: drained(bridge, healthy), f"healthy event {i}", timeout=30)
        latencies.append(time.monotonic() - sent)
    proxy.release(rule)
    await until(lambda: drained(bridge), "the hung threads delivered after release", timeout=60)
    print(f"healthy thread latencies with {HUNG_THREADS} hung threads: {latencies}")
    assert max(latencies) < timeout / 2, latencies


# --- a failed project-space link ---------------------------------------------------------------


async def test_a_failed_space_link_is_tried_again_at_a_later_event(
    stack: Stack,
    start_bridge: Any,
    hooks: HookPoster,
    proxy: HomeserverProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("claude_bridge.router.SPACE_LINK_RETRY", 0.0)
    bridge: Bridge = await start_bridge(homeserver={"address": proxy.url, "request_timeout": 1})
    project = f"/home/dev/projects/relinked-{new_session()[:8]}"
    session = new_session()
    thread_id = session.lower()
    child = proxy.hang(method="PUT", path=r"/state/m\.space\.child/", times=1)
    assert (await hooks.post(hook_payload("SessionStart", session, cwd=project)))[0] == 200
    room = await room_of(bridge, session)
    await proxy.wait_holding(child)  # the space's half of the link never gets an answer

    async def delivered_unlinked() -> bool:
        thread = await bridge.threads.get(thread_id)
        return await drained(bridge, session) and thread is not None

    await until(delivered_unlinked, "the session start delivered without its space link")
    assert (await bridge.threads.get(thread_id)).space_linked_at is None  # type: ignore[union-attr]

    assert (await hooks.post(hook_payload("UserPromptSubmit", session, prompt="go on")))[0] == 200

    async def linked() -> bool:
        thread = await bridge.threads.get(thread_id)
        return thread is not None and thread.space_linked_at is not None

    await until(linked, "the link made at the next event")
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
