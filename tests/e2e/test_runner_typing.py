"""An operator's message to an idle runner session becomes a typed user turn (issue 15), on real
Synapse, SQLite and Postgres: claimed exactly once (never also by the background waiter or a hook
answer), handed to the runner as a ``type`` job, and the prompt Claude Code then reports is shown
as the operator's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from claude_bridge.app import Bridge
from tests.e2e.conftest import HOOK_TOKEN, HookPoster, Stack, hook_payload
from tests.e2e.runner_helpers import (
    ALICE,
    bot_chat,
    idle_runner_session,
    launching,
    poller,
    running,
    started,
)
from tests.e2e.runner_poller import Poller, reached
from tests.e2e.test_control import command, delivered_mark
from tests.e2e.test_foundation import _until

pytestmark = pytest.mark.e2e
__all__ = ["launching", "poller"]  # the fixtures, from runner_helpers.py


async def wait_once(stack: Stack, session: str, timeout: float) -> int:
    """One long-poll of the background waiter, as ``claude-bridge-hook wait`` does it."""
    url = f"http://{stack.config['hooks']['listen']}/claude/v1/sessions/{session}/wait"
    headers = {"Authorization": f"Bearer {HOOK_TOKEN}"}
    async with aiohttp.ClientSession() as http:
        params = {"timeout": str(timeout), "since": "1"}
        async with http.get(url, headers=headers, params=params) as resp:
            return resp.status


async def states(bridge: Bridge, session: str) -> list[tuple[str, str | None]]:
    rows = await bridge.db.fetch(
        "SELECT state, delivered_via FROM session_message WHERE thread_id=$1 ORDER BY id", session
    )
    return [(r["state"], r["delivered_via"]) for r in rows]


async def test_a_message_to_an_idle_runner_session_is_typed_once(
    stack: Stack, launching: Bridge, poller: Poller, hooks: HookPoster
) -> None:
    admin, alice = stack.users["admin"], stack.users["alice"]
    session, room, ghost = await idle_runner_session(stack, launching, poller, hooks)

    key = f"thread:{session}"
    waiter = asyncio.create_task(wait_once(stack, session, 4))

    async def holding() -> bool:
        return launching.control.signals.holding(key) > 0

    await _until(holding, "the background waiter's long-poll")
    sent = await alice.send_text(room, "please run the linter")
    await reached(launching, sent)
    jobs = await poller.poll(wait=20)
    assert [(j["kind"], j["text"], j["requested_by"]) for j in jobs] == [
        ("type", "please run the linter", ALICE)
    ]
    assert jobs[0]["session_id"] == session and jobs[0]["room_id"] == room
    assert await asyncio.wait_for(waiter, 30) == 204  # the waiter did not get it as well
    assert await states(launching, session) == [("delivered", "runner")]
    await delivered_mark(alice, room, ghost, sent)

    # Redelivered until settled, never a second job for the message.
    assert [j["id"] for j in await poller.poll()] == [jobs[0]["id"]]
    await poller.settle(jobs[0])
    assert await poller.poll() == []

    # Claude Code reports the typed prompt: it is shown as alice's, and no hook answer
    # carries the message again.
    status, answer = await hooks.post(
        hook_payload("UserPromptSubmit", session, prompt="please run the linter")
    )
    assert status == 200 and answer == {}
    shown = await admin.wait_for(
        lambda e: e["sender"] == ghost and e["content"].get("body", "").startswith("🧑‍💻 @alice"),
        room_id=room,
    )
    assert shown["content"]["body"] == f"🧑‍💻 {ALICE}:\n> please run the linter"
    count = await launching.db.fetchval("SELECT COUNT(*) FROM runner_jobs WHERE kind='type'")
    assert count == 1


async def test_mid_turn_messages_go_by_the_hook_answers(
    stack: Stack, launching: Bridge, poller: Poller, hooks: HookPoster
) -> None:
    admin, alice = stack.users["admin"], stack.users["alice"]
    job, room = await started(stack, launching, poller, await bot_chat(admin))
    session = job["session_id"]
    poller.sessions = [running(job)]
    await poller.settle(job)
    payload: dict[str, Any] = hook_payload("UserPromptSubmit", session, prompt="go")
    assert (await hooks.post(payload))[0] == 200  # Claude is working

    await alice.send_text(room, "also check the docs")

    async def queued() -> bool:
        return await states(launching, session) == [("queued", None)]

    await _until(queued, "the message queued")
    assert await poller.poll() == []  # not typed into a busy session
    status, answer = await hooks.post(hook_payload("PreToolUse", session, tool_use_id="toolu_1"))
    assert status == 200 and "also check the docs" in str(answer)
    assert await states(launching, session) == [("delivered", "PreToolUse")]


async def test_a_message_written_while_the_runner_was_away_is_typed_when_it_polls(
    stack: Stack, launching: Bridge, poller: Poller, hooks: HookPoster
) -> None:
    alice = stack.users["alice"]
    session, room, _ = await idle_runner_session(stack, launching, poller, hooks)
    runners = launching.control.runners

    async def offline() -> bool:
        return not runners.online(runners.all()[0])

    await _until(offline, "the runner to count as offline")
    await alice.send_text(room, "are you there?")

    async def queued() -> bool:
        return await states(launching, session) == [("queued", None)]

    await _until(queued, "the message queued, not typed: no runner to type it")
    jobs = await poller.poll(wait=20)  # back: the poll hands it over
    assert [(j["kind"], j["text"]) for j in jobs] == [("type", "are you there?")]
    assert await states(launching, session) == [("delivered", "runner")]


async def test_a_file_goes_with_its_type_job_only_to_a_runner_that_keeps_files(
    stack: Stack, launching: Bridge, poller: Poller, hooks: HookPoster
) -> None:
    from tests.e2e.test_attachments import png, reply_to, send_file

    alice = stack.users["alice"]
    session, room, ghost = await idle_runner_session(stack, launching, poller, hooks)
    # This runner keeps no files: the file waits, and the room is told why.
    image = png()
    sent = await send_file(alice, room, image, "plot.png")
    note = await reply_to(alice, room, ghost, sent)
    assert "waits" in note
    assert await poller.poll() == []
    assert await states(launching, session) == [("queued", None)]

    # It says where its host keeps them: the next poll hands the file over with the job.
    poller.headers = {"X-Claude-Bridge-Files": "/home/me/.cache/claude-bridge/attachments"}
    jobs = await poller.poll(wait=20)
    assert [j["kind"] for j in jobs] == ["type"]
    [entry] = jobs[0]["files"]
    assert entry["name"] == "plot.png"
    assert entry["path"].startswith(f"/home/me/.cache/claude-bridge/attachments/{session}/")
    assert entry["path"] in jobs[0]["text"] and ALICE in jobs[0]["text"]
    fetched = f"/claude/v1/sessions/{session}/attachments/{entry['id']}"
    assert await poller.fetch(fetched) == (200, image)
    assert await states(launching, session) == [("delivered", "runner")]


async def test_after_an_interrupt_what_waited_is_typed(
    stack: Stack, launching: Bridge, poller: Poller, hooks: HookPoster
) -> None:
    """An interrupt ends the turn without a Stop hook: once the runner says it went through, a
    message written during the turn is typed, not left for a hook that may never come."""
    alice = stack.users["alice"]
    session, room, ghost = await idle_runner_session(stack, launching, poller, hooks)
    payload = hook_payload("UserPromptSubmit", session, prompt="write a long essay")
    assert (await hooks.post(payload))[0] == 200  # Claude is working
    await alice.send_text(room, "stop, do the short version")

    async def queued() -> bool:
        return await states(launching, session) == [("queued", None)]

    await _until(queued, "the message queued")
    said = await command(alice, room, ghost, "!claude interrupt")
    assert "Interrupting" in said
    [interrupt] = await poller.poll()
    assert interrupt["kind"] == "interrupt"
    jobs = await poller.poll(results=[{"job_id": interrupt["id"], "ok": True}], wait=20)
    if not jobs:  # the type job may come with the next answer
        jobs = await poller.poll(wait=20)
    assert [(j["kind"], j["text"]) for j in jobs] == [("type", "stop, do the short version")]
    assert await states(launching, session) == [("delivered", "runner")]


async def offline(bridge: Bridge) -> None:
    runners = bridge.control.runners

    async def gone() -> bool:
        return not runners.online(runners.all()[0])

    await _until(gone, "the runner to count as offline")


async def notice(user: Any, room: str, ghost: str, words: str) -> str:
    found = await user.wait_for(
        lambda e: e["sender"] == ghost and words in e["content"].get("body", ""), room_id=room
    )
    return str(found["content"]["body"])


async def test_a_type_job_its_runner_never_got_is_queued_again_when_it_goes_offline(
    stack: Stack, launching: Bridge, poller: Poller, hooks: HookPoster
) -> None:
    """The runner goes away between the claim and its next poll: the message is not left
    claimed for a runner that never had it. It is queued again (the room is told), the
    session's hooks can carry it, and the runner types it once it is back."""
    admin, alice = stack.users["admin"], stack.users["alice"]
    launching.control.typing.check_every = 0.2
    session, room, ghost = await idle_runner_session(stack, launching, poller, hooks)
    # A poll that ended just now, of a runner that polls every 8 s: online (for twice that)
    # with no poll open, so the message is claimed for a job it has not been handed yet.
    assert await poller.poll(wait=8) == []
    sent = await alice.send_text(room, "run the migrations")
    await reached(launching, sent)

    async def claimed() -> bool:
        return await states(launching, session) == [("delivered", "runner")]

    await _until(claimed, "the message claimed for a type job")
    await offline(launching)
    said = await notice(admin, room, ghost, "queued again")
    assert said.startswith(f"⚠️ {ALICE}: the runner on `laptop` went offline before")

    async def requeued() -> bool:
        return await states(launching, session) == [("queued", None)]

    await _until(requeued, "the message back in the queue")
    assert await launching.db.fetchval("SELECT COUNT(*) FROM runner_jobs WHERE kind='type'") == 0

    # Back: typed once, as any message that waited for the runner.
    jobs = await poller.poll(wait=20)
    assert [(j["kind"], j["text"]) for j in jobs] == [("type", "run the migrations")]
    assert await states(launching, session) == [("delivered", "runner")]


async def test_a_type_job_handed_out_and_never_answered_is_told(
    stack: Stack, launching: Bridge, poller: Poller, hooks: HookPoster
) -> None:
    """The runner got the job and went away without a result: it may have typed it or not, so
    the room is told (once), and the job stays for the runner to answer when it is back."""
    admin, alice = stack.users["admin"], stack.users["alice"]
    launching.control.typing.check_every = 0.2
    session, room, ghost = await idle_runner_session(stack, launching, poller, hooks)
    await reached(launching, await alice.send_text(room, "deploy to staging"))
    [job] = await poller.poll(wait=20)
    assert job["kind"] == "type"
    await offline(launching)
    said = await notice(admin, room, ghost, "went offline before saying whether")
    assert said.startswith(f"⚠️ {ALICE}:") and "may not have it" in said
    assert await states(launching, session) == [("delivered", "runner")]  # never twice
    assert await launching.control.typing.stranded() == 0  # told once: nothing more to do

    # Back, with the result of its journal: settled, and not handed out again.
    assert [j["id"] for j in await poller.poll()] == [job["id"]]
    await poller.settle(job)
    assert await poller.poll() == []


async def test_a_type_job_the_runner_failed_is_told(
    stack: Stack, launching: Bridge, poller: Poller, hooks: HookPoster
) -> None:
    admin, alice = stack.users["admin"], stack.users["alice"]
    _, room, ghost = await idle_runner_session(stack, launching, poller, hooks)
    sent = await alice.send_text(room, "and the changelog")
    await reached(launching, sent)
    [job] = await poller.poll(wait=20)
    await poller.settle(job, ok=False, error="tmux failed on the host: no server running")
    said = await notice(admin, room, ghost, "could not be typed")
    assert said.startswith(f"⚠️ {ALICE}:") and "no server running" in said
