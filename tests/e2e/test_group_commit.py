"""Many sessions posting at once through the real bridge (SQLite and Postgres; on Postgres their
INSERTs share commits, ``store/group_commit.py``): every acknowledged event is already committed
when its 200 arrives, each is stored once, each thread's events keep their order, and the rooms
show them in that order."""

from __future__ import annotations

import asyncio
import json

import pytest

from claude_bridge.app import Bridge
from claude_bridge.ids import thread_id_for
from tests.e2e.conftest import HookPoster, Stack, hook_payload, new_session

pytestmark = pytest.mark.e2e

SESSIONS, EVENTS = 16, 6


async def _until(check, what: str, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_sessions_posting_at_once_are_stored_once_in_order_before_their_ack(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    sessions = [new_session() for _ in range(SESSIONS)]
    for session in sessions:  # rooms first: the events below all take the one-INSERT path
        status, _ = await hooks.post(hook_payload("SessionStart", session))
        assert status == 200
    not_yet_committed: list[str] = []

    async def session_posts(session: str) -> None:
        for n in range(EVENTS):
            prompt = f"{session} step {n}"
            status, _ = await hooks.post(hook_payload("UserPromptSubmit", session, prompt=prompt))
            assert status == 200
            # Acknowledged: another connection must already see the row.
            found = await bridge.db.fetchval(
                "SELECT COUNT(*) FROM hook_event WHERE thread_id=$1 AND payload LIKE $2",
                thread_id_for(session),
                f'%"prompt": "{prompt}"%',
            )
            if found != 1:
                not_yet_committed.append(prompt)

    await asyncio.gather(*(session_posts(s) for s in sessions))
    assert not_yet_committed == []
    if bridge.db.scheme.value == "postgres":
        assert bridge.outbox._group is not None  # the appends went through the group writer

    for session in sessions:
        rows = await bridge.db.fetch(
            "SELECT payload FROM hook_event WHERE thread_id=$1 AND event_name='UserPromptSubmit' "
            "ORDER BY id",
            thread_id_for(session),
        )
        prompts = [json.loads(r["payload"])["prompt"] for r in rows]
        assert prompts == [f"{session} step {n}" for n in range(EVENTS)]  # once each, in order

    async def delivered() -> bool:
        return (await bridge.outbox.backlog())[0] == 0

    await _until(delivered, "every event delivered")
    admin = stack.users["admin"]
    for session in sessions[:3]:
        thread = await bridge.threads.get(thread_id_for(session))
        assert thread is not None and thread.room_id
        await admin.join(thread.room_id)
        shown = [
            e["content"]["body"]
            for e in await admin.messages(thread.room_id)
            if e["type"] == "m.room.message" and f"{session} step" in e["content"].get("body", "")
        ]
        assert [b[b.index("step") :] for b in shown] == [f"step {n}" for n in range(EVENTS)]
