"""Host runner commands from Matrix (issue 15) on real Synapse, SQLite and Postgres: who may
start, resume, interrupt and end sessions, what is refused and why, and what the rooms show.

The runner is the minimal poller of ``runner_poller.py``: it sees exactly what the bridge hands a
runner. admin is an admin, alice an operator (granted project ``web`` in bridge.launch), victor a
viewer.
"""

from __future__ import annotations

import uuid

import pytest

from claude_bridge.app import Bridge
from claude_bridge.room_state import THREAD_STATE
from tests.e2e.conftest import HookPoster, Stack, StartBridge
from tests.e2e.runner_helpers import (
    ADMIN,
    ALICE,
    BOT,
    LAUNCH,
    ask,
    bot_chat,
    jobs_of,
    launching,
    poller,
    running,
    started,
)
from tests.e2e.runner_poller import Poller
from tests.e2e.security.rooms import knock_in
from tests.e2e.test_control import open_thread
from tests.e2e.test_foundation import _until

pytestmark = pytest.mark.e2e
__all__ = ["launching", "poller"]  # the fixtures, from runner_helpers.py

SECRET = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


async def test_an_admins_new_makes_the_room_and_the_job(
    stack: Stack, launching: Bridge, poller: Poller
) -> None:
    admin = stack.users["admin"]
    dm = await bot_chat(admin)
    job, room = await started(stack, launching, poller, dm)
    assert job["kind"] == "new" and job["project"] == "api"
    assert job["prompt"] == "write the tests" and job["requested_by"] == ADMIN
    assert job["room_id"] == room
    uuid.UUID(job["session_id"])
    ghost = f"@claude-{job['session_id']}:localhost"
    notice = await admin.wait_for(
        lambda e: e["sender"] == ghost and "Started from Matrix" in e["content"].get("body", ""),
        room_id=room,
    )
    body = notice["content"]["body"]
    assert ADMIN in body and "`laptop`" in body
    assert f"tmux attach -t claude-api-{job['session_id'][:8]}" in body
    thread = await launching.threads.for_session(job["session_id"])
    assert thread is not None and thread.token_name == "laptop"  # the runner's token owns it
    audit = await launching.db.fetchval(
        "SELECT detail FROM audit_log WHERE action='runner job' AND actor=$1", ADMIN
    )
    assert audit.startswith("new api on laptop")

    # Settled: never handed out again.
    await poller.settle(job)
    assert await poller.poll() == []
    # Another token's runner on the same host name never saw it (test_runner_poll has more).


async def test_who_may_new_and_what_is_refused(
    stack: Stack, launching: Bridge, poller: Poller
) -> None:
    admin, alice = stack.users["admin"], stack.users["alice"]
    await poller.poll()
    dm = await bot_chat(alice)
    said = await ask(alice, dm, "new api do something")
    assert "needs admin" in said and "bridge.launch" in said
    assert await jobs_of(launching) == []
    # alice is granted `web`.
    said = await ask(alice, dm, "new web fix the build")
    assert "Starting Claude Code in `web`" in said
    assert [j["kind"] for j in await poller.poll()] == ["new"]

    admin_dm = await bot_chat(admin)
    for text, reason in [
        ("new nope do it", "No runner on any host offers project `nope`"),
        ("new ../etc do it", "`..` is not allowed"),
        ("new /etc do it", "paths are not allowed"),
        ("new api on elsewhere do it", "No runner has polled from host `elsewhere`"),
        ("new api", "What should Claude do?"),
    ]:
        said = await ask(admin, admin_dm, text)
        assert reason in said, (text, said)
    assert len(await jobs_of(launching)) == 1


async def test_an_offline_host_is_refused_at_once(
    stack: Stack, launching: Bridge, poller: Poller
) -> None:
    await poller.poll()
    runners = launching.control.runners

    async def offline() -> bool:
        return not runners.online(runners.all()[0])

    await _until(offline, "the runner to count as offline")
    admin = stack.users["admin"]
    dm = await bot_chat(admin)
    said = await ask(admin, dm, "new api on laptop write the tests")
    assert "host `laptop` is offline since" in said and "nothing was queued" in said
    assert await jobs_of(launching) == []


async def test_the_runners_accept_from_is_enforced(
    stack: Stack, launching: Bridge, poller: Poller
) -> None:
    poller.accept_from = [ALICE]
    await poller.poll()
    admin = stack.users["admin"]
    said = await ask(admin, await bot_chat(admin), "new api write the tests")
    assert "does not take jobs from @admin:localhost" in said
    assert await jobs_of(launching) == []


async def test_interrupt_end_resume_and_exit_in_the_room(
    stack: Stack, launching: Bridge, poller: Poller
) -> None:
    admin, alice, victor = stack.users["admin"], stack.users["alice"], stack.users["victor"]
    job, room = await started(stack, launching, poller, await bot_chat(admin))
    session = job["session_id"]
    ghost = f"@claude-{session}:localhost"
    poller.sessions = [running(job)]
    await poller.settle(job)

    await knock_in(launching, victor, session, room)
    said = await ask(victor, room, "!claude interrupt", ghost)
    assert "needs operator" in said
    said = await ask(alice, room, "!claude interrupt", ghost)
    assert "Interrupting" in said
    said = await ask(alice, room, "!claude end", ghost)  # alice may not launch `api`
    assert "needs admin" in said
    [interrupt] = await poller.poll()
    assert interrupt["kind"] == "interrupt" and interrupt["session_id"] == session
    await poller.settle(interrupt)

    said = await ask(admin, room, "!claude end", ghost)
    assert "Ending the session" in said
    [end] = await poller.poll()
    assert end["kind"] == "end"
    # The runner ends it and reports the exit, with the pane's last lines.
    poller.sessions = []
    tail = f"some output\nexport GITHUB_TOKEN={SECRET}\nbye\n"
    exit_ = {"session_id": session, "status": 0, "tail": tail}
    await poller.poll(results=[{"job_id": end["id"], "ok": True}], exits=[exit_])
    await poller.poll(exits=[exit_])  # reported twice (a lost answer): told once
    notice = await admin.wait_for(
        lambda e: e["sender"] == ghost and "exited on `laptop`" in e["content"].get("body", ""),
        room_id=room,
    )
    body = notice["content"]["body"]
    assert "status 0" in body and "bye" in body and SECRET not in body

    async def ended() -> bool:
        thread = await launching.threads.for_session(session)
        return thread is not None and thread.status == "ended"

    await _until(ended, "the room marked ended")
    exits = await launching.db.fetchval("SELECT COUNT(*) FROM runner_jobs WHERE kind='exit'")
    assert exits == 1

    # Resumed in the same room, on the same host.
    said = await ask(admin, room, "!claude resume", ghost)
    assert "Resuming the session on `laptop`, here" in said
    [resume] = await poller.poll()
    assert resume["kind"] == "resume" and resume["session_id"] == session
    assert resume["room_id"] == room


async def test_interrupt_in_a_terminal_session_says_why_not(
    stack: Stack, launching: Bridge, hooks: HookPoster, poller: Poller
) -> None:
    await poller.poll()
    _, room, ghost = await open_thread(stack, launching, hooks)
    said = await ask(stack.users["alice"], room, "!claude interrupt", ghost)
    assert "not started by a host runner" in said and "!claude stop" in said
    assert await jobs_of(launching) == []


async def test_a_refused_job_is_told_to_whoever_asked(
    stack: Stack, launching: Bridge, poller: Poller
) -> None:
    admin = stack.users["admin"]
    dm = await bot_chat(admin)
    job, _ = await started(stack, launching, poller, dm)
    await poller.settle(job, ok=False, error="at max_sessions (4)")
    told = await admin.wait_for(
        lambda e: e["sender"] == BOT and "at max_sessions (4)" in e["content"].get("body", ""),
        room_id=dm,
    )
    assert "could not do `new` in `api`" in told["content"]["body"]

    async def ended() -> bool:
        thread = await launching.threads.for_session(job["session_id"])
        return thread is not None and thread.status == "ended"

    await _until(ended, "the room of the session that never started marked ended")


async def test_hosts_lists_the_runners(stack: Stack, launching: Bridge, poller: Poller) -> None:
    admin = stack.users["admin"]
    dm = await bot_chat(admin)
    job, _ = await started(stack, launching, poller, dm)
    poller.sessions = [running(job)]
    await poller.settle(job)
    said = await ask(admin, dm, "hosts")
    assert "laptop" in said and "online" in said and "`api`" in said
    assert f"tmux attach -t claude-api-{job['session_id'][:8]}" in said


async def test_another_tokens_runner_cannot_claim_a_session(
    stack: Stack, start_bridge: StartBridge, poller: Poller
) -> None:
    """A runner of another token that says it runs this session, or that it exited, changes
    nothing: no exit notice, no job for it; the owner's runner still gets the interrupt."""
    from tests.e2e.test_runner_poll import OTHER, TOKENS

    bridge = await start_bridge(**LAUNCH, hooks={"tokens": TOKENS})
    admin, alice = stack.users["admin"], stack.users["alice"]
    job, room = await started(stack, bridge, poller, await bot_chat(admin))
    session = job["session_id"]
    ghost = f"@claude-{session}:localhost"
    poller.sessions = [running(job)]
    await poller.settle(job)
    intruder = Poller(poller.url, token=OTHER, projects=["api"])
    try:
        intruder.sessions = [running(job)]
        fake_exit = {"session_id": session, "status": 1, "tail": "pwned"}
        assert await intruder.poll(exits=[fake_exit]) == []
        said = await ask(alice, room, "!claude interrupt", ghost)
        assert "Interrupting" in said and "`laptop`" in said
        assert await intruder.poll() == []
        assert [j["kind"] for j in await poller.poll()] == ["interrupt"]
        # The owner's runner reports the real exit: the only one shown.
        poller.sessions = []
        real_exit = {"session_id": session, "status": 0, "tail": "the real end"}
        await poller.poll(exits=[real_exit])
        await admin.wait_for(
            lambda e: e["sender"] == ghost and "the real end" in e["content"].get("body", ""),
            room_id=room,
        )
        rows = await bridge.db.fetch("SELECT token_name, text FROM runner_jobs WHERE kind='exit'")
        assert [(r["token_name"], r["text"]) for r in rows] == [("laptop", "the real end")]
    finally:
        await intruder.close()


async def test_a_new_sessions_thread_knows_its_directory_from_the_start(
    stack: Stack, launching: Bridge, poller: Poller
) -> None:
    """The runner says where each project is: the thread records it as a session started at the
    host records its cwd, before any hook (the room's state, `status`, `!claude file`)."""
    admin = stack.users["admin"]
    dm = await bot_chat(admin)
    dirs = {"api": "/home/me/src/api", "web": "/srv/web"}
    await poller.poll(project_dirs=dirs)
    assert "Starting Claude Code in `api`" in await ask(admin, dm, "new api write the tests")
    [job] = await poller.poll(project_dirs=dirs)
    thread = await launching.threads.for_session(job["session_id"])
    assert thread is not None and thread.room_id is not None
    assert thread.project_path == "/home/me/src/api" and thread.project_name == "api"
    await admin.wait_for_invite(thread.room_id)
    await admin.join(thread.room_id)
    state = await admin.room_state(thread.room_id)
    [own] = [e for e in state if e["type"] == THREAD_STATE]
    assert own["content"]["cwd"] == "/home/me/src/api"
    said = await ask(admin, thread.room_id, "!claude status", thread.ghost_mxid)
    assert "(`/home/me/src/api`)" in said, said
