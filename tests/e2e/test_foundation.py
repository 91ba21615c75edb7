"""The walking skeleton end to end: hooks in, a room with its ghost out, on a real Synapse."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import aiohttp
import pytest

from claude_bridge.app import Bridge
from claude_bridge.errors import ExitCode, FatalError
from claude_bridge.store import create_database
from tests.e2e.conftest import HookPoster, Stack, hook_payload, joined_rooms, new_session
from tests.matrix_client import MatrixTestClient

pytestmark = pytest.mark.e2e


def by_ghost(ghost: str, body_part: str):  # type: ignore[no-untyped-def]
    def match(event: dict) -> bool:
        return (
            event.get("sender") == ghost
            and event.get("type") == "m.room.message"
            and body_part in event.get("content", {}).get("body", "")
        )

    return match


async def test_a_session_becomes_a_room(stack: Stack, bridge: Bridge, hooks: HookPoster) -> None:
    session = new_session()
    for name, extra in (
        ("SessionStart", {}),
        ("UserPromptSubmit", {"prompt": "add a **test** for the parser"}),
        (
            "Stop",
            {"last_assistant_message": "Done:\n\n- added `test_parser.py`\n- <b>all</b> green"},
        ),
    ):
        status, body = await hooks.post(hook_payload(name, session, **extra))
        assert (status, body) == (200, {})

    thread_id = session.lower()
    ghost = f"@claude-{thread_id}:localhost"
    alice = stack.users["alice"]
    room_id = await _wait_for_room(bridge, thread_id)
    assert await alice.wait_for_invite(room_id, timeout=30) == room_id
    assert await alice.resolve_alias(f"#claude-thread-{thread_id}:localhost") == room_id
    await alice.join(room_id)

    stop = await alice.wait_for(by_ghost(ghost, "added"), room_id=room_id, timeout=30)
    timeline = [
        e
        for e in await alice.messages(room_id)
        if e["type"] == "m.room.message" and e["sender"] == ghost
    ]
    bodies = [e["content"]["body"] for e in timeline]
    assert len(bodies) == 3, bodies
    assert "demo-app" in bodies[0]  # the SessionStart notice names the project
    # The plain body reads as text (room-list previews); the emphasis lives in the HTML.
    assert "add a test for the parser" in bodies[1]
    assert "<strong>test</strong>" in timeline[1]["content"]["formatted_body"]
    assert stop["content"]["body"] == bodies[2]
    html = stop["content"]["formatted_body"]
    assert "<li>" in html and "<code>test_parser.py</code>" in html
    assert "<b>all</b>" not in html and "&lt;b&gt;all&lt;/b&gt;" in html  # raw HTML escaped

    assert await joined_rooms(stack, ghost) == [room_id]  # and in no other room
    thread = await bridge.threads.get(thread_id)
    assert thread is not None and thread.project_name == "demo-app"


async def test_matrix_message_arrives_through_a_transaction(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session = new_session()
    assert (await hooks.post(hook_payload("SessionStart", session)))[0] == 200
    alice = stack.users["alice"]
    thread = await _wait_for_room(bridge, session.lower())
    await alice.join(thread)
    event_id = await alice.send_text(thread, "please also update the docs")

    async def stored() -> bool:
        rows = await bridge.matrix_events.in_room(thread)
        return any(r.event_id == event_id for r in rows)

    await _until(stored, "alice's message stored from an appservice transaction")
    row = next(r for r in await bridge.matrix_events.in_room(thread) if r.event_id == event_id)
    assert row.sender == alice.user_id
    assert row.event["content"]["body"] == "please also update the docs"


async def test_concurrent_first_events_make_one_room(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session = new_session()
    results = await asyncio.gather(
        *(hooks.post(hook_payload("UserPromptSubmit", session, prompt=f"p{i}")) for i in range(20))
    )
    assert all(status == 200 for status, _ in results)
    room_id = await _wait_for_room(bridge, session.lower())

    async def all_sent() -> bool:
        return (await bridge.outbox.backlog())[0] == 0

    await _until(all_sent, "all 20 events delivered")
    ghost = f"@claude-{session.lower()}:localhost"
    assert await joined_rooms(stack, ghost) == [room_id]  # one room on the homeserver
    admin = stack.users["admin"]
    await admin.join(room_id)
    members = await admin.joined_members(room_id)
    assert [m for m in members if m.startswith("@claude-")] == [ghost]
    prompts = [
        e["content"]["body"]
        for e in await admin.messages(room_id)
        if e["type"] == "m.room.message" and e["sender"] == ghost
    ]
    assert len(prompts) == 20


async def test_restart_reuses_the_room(stack: Stack, start_bridge, hooks: HookPoster) -> None:  # type: ignore[no-untyped-def]
    session = new_session()
    first = await start_bridge()
    await hooks.post(hook_payload("SessionStart", session))
    room_id = await _wait_for_room(first, session.lower())
    await first.stop()

    second = await start_bridge()
    status, _ = await hooks.post(hook_payload("SessionStart", session, source="resume"))
    assert status == 200

    async def drained() -> bool:
        return (await second.outbox.backlog())[0] == 0

    await _until(drained, "the resumed session's event delivered")
    ghost = f"@claude-{session.lower()}:localhost"
    assert await joined_rooms(stack, ghost) == [room_id]
    # Both SessionStart notices, the one after the restart included, are in that room.
    admin = stack.users["admin"]
    await admin.join(room_id)
    shown = [e for e in await admin.messages(room_id) if e["type"] == "m.room.message"]
    assert [e["sender"] for e in shown] == [ghost, ghost], shown


async def test_hook_ingest_rejects_bad_input(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session = new_session()
    good = hook_payload("SessionStart", session)
    cases = [
        ({"token": ""}, 401, "token"),
        ({"token": "wrong"}, 401, "token"),
        ({"raw": b"{not json"}, 400, "JSON"),
        ({"raw": b"[1, 2]"}, 400, "object"),
        ({"raw": b"\xff\xfe{}"}, 400, "UTF-8"),
        ({"raw": b"[" * 100_000 + b"]" * 100_000}, 400, ""),
        ({"raw": b"x" * (2 * 1024 * 1024)}, 413, "larger"),
        ({"payload": {"hook_event_name": "Stop"}}, 422, "session_id"),
        ({"payload": {**good, "session_id": 42}}, 422, "session_id"),
        (
            {"payload": {**good, "hook_event_name": "Stop", "stop_hook_active": "maybe"}},
            422,
            "stop_hook_active",
        ),
    ]
    for case, want_status, want_text in cases:
        status, body = await hooks.post(
            case.get("payload", good), token=case.get("token"), raw=case.get("raw")
        )
        assert status == want_status, (case, body)
        assert isinstance(body, dict) and want_text in body["error"], (case, body)
    # Nothing of the rejected requests was stored, not even the thread; an unknown event is
    # accepted and stored.
    assert await bridge.threads.get(session.lower()) is None
    status, body = await hooks.post({**good, "hook_event_name": "SomeFutureEvent"})
    assert (status, body) == (200, {})
    rows = await bridge.db.fetch(
        "SELECT event_name FROM hook_event WHERE thread_id=$1", session.lower()
    )
    assert [r["event_name"] for r in rows] == ["SomeFutureEvent"]


async def test_appservice_auth_and_replayed_transactions(stack: Stack, bridge: Bridge) -> None:
    base = stack.config["appservice"]["address"]
    hs_token = stack.config["appservice"]["hs_token"]
    txn = f"test-{uuid.uuid4().hex}"
    event = {
        "event_id": f"$test-{uuid.uuid4().hex}",
        "room_id": "!nowhere:localhost",
        "sender": "@mallory:localhost",
        "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": "hello"},
        "origin_server_ts": 1,
    }
    url = f"{base}/_matrix/app/v1/transactions/{txn}"
    body = json.dumps({"events": [event]})
    async with aiohttp.ClientSession() as http:
        async with http.put(url, data=body) as resp:
            assert resp.status == 401
            assert (await resp.json())["errcode"] == "M_UNAUTHORIZED"
        async with http.put(url, data=body, headers={"Authorization": "Bearer nope"}) as resp:
            assert resp.status == 403
            assert (await resp.json())["errcode"] == "M_FORBIDDEN"
        auth = {"Authorization": f"Bearer {hs_token}"}
        async with http.put(url, data="{oops", headers=auth) as resp:
            assert resp.status == 400
            assert (await resp.json())["errcode"] == "M_NOT_JSON"
        for _ in range(3):  # the same transaction retried
            async with http.put(url, data=body, headers=auth) as resp:
                assert resp.status == 200
        # The same event again under a new transaction id (Synapse does this after a restart).
        async with http.put(f"{url}-again", data=body, headers=auth) as resp:
            assert resp.status == 200
        alias_url = f"{base}/_matrix/app/v1/rooms/{'%23claude-thread-nope%3Alocalhost'}"
        async with http.get(alias_url, headers=auth) as resp:
            assert resp.status == 404
    stored = await bridge.db.fetchval(
        "SELECT COUNT(*) FROM matrix_event WHERE event_id=$1", event["event_id"]
    )
    assert stored == 1
    txns = await bridge.db.fetchval(
        "SELECT COUNT(*) FROM appservice_txn WHERE txn_id IN ($1, $2)", txn, f"{txn}-again"
    )
    assert txns == 2


async def _wait_for_room(bridge: Bridge, thread_id: str) -> str:
    async def has_room() -> str | None:
        thread = await bridge.threads.get(thread_id)
        return thread.room_id if thread else None

    return await _until(has_room, f"room for thread {thread_id}")


async def _until(check, what: str, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    """Poll bridge state (not the homeserver) until ``check`` is truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_room_created_but_not_recorded_is_adopted(
    stack: Stack, start_bridge, hooks: HookPoster
) -> None:  # type: ignore[no-untyped-def]
    """A crash between createRoom and recording its id must not make a second room."""
    session = new_session()
    first = await start_bridge()
    await hooks.post(hook_payload("SessionStart", session))
    room_id = await _wait_for_room(first, session.lower())
    await first.stop()
    db = create_database(first.config.database_url(Path(".")))
    await db.start()
    await db.execute("UPDATE thread SET room_id=NULL WHERE id=$1", session.lower())
    await db.stop()

    second = await start_bridge()
    assert (await hooks.post(hook_payload("UserPromptSubmit", session)))[0] == 200
    assert await _wait_for_room(second, session.lower()) == room_id
    assert await joined_rooms(stack, f"@claude-{session.lower()}:localhost") == [room_id]


async def test_a_room_nobody_was_invited_to_gets_its_invites_when_adopted(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    """Synapse makes the alias before it sends the invites, so a createRoom cut short (Synapse
    stopped, as in the homeserver outage test) leaves a room behind the alias that no operator
    was invited to. The bridge adopts that room: it must send the invites then."""
    session = new_session()
    thread_id = session.lower()
    ghost = f"@claude-{thread_id}:localhost"
    as_token = stack.config["appservice"]["as_token"]
    async with MatrixTestClient(stack.synapse.url, ghost, as_token, appservice=True) as as_ghost:
        await as_ghost.request(
            "POST",
            "/_matrix/client/v3/register",
            body={"type": "m.login.application_service", "username": f"claude-{thread_id}"},
        )
        left = await as_ghost.create_room(alias_localpart=f"claude-thread-{thread_id}")

    assert (await hooks.post(hook_payload("SessionStart", session)))[0] == 200
    assert await _wait_for_room(bridge, thread_id) == left
    alice = stack.users["alice"]
    assert await alice.wait_for_invite(left, timeout=60) == left
    await alice.join(left)
    assert await joined_rooms(stack, ghost) == [left]


async def test_rejected_as_token_is_fatal_with_its_exit_code(stack: Stack, start_bridge) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FatalError) as err:
        await start_bridge(appservice={"as_token": "not-the-registered-token"})
    assert err.value.exit_code == ExitCode.AS_TOKEN_REJECTED
    assert "as_token" in str(err.value)
