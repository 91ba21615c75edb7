"""Hook answers composed from the stores, on real SQLite and Postgres, without a homeserver."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from claude_bridge.config.sections.control import ControlConfig
from claude_bridge.control.approvals import Approvals
from claude_bridge.control.messages import MessageQueue
from claude_bridge.control.responder import Responder
from claude_bridge.control.signals import Signals, thread_key
from claude_bridge.events.parse import parse_hook_event
from claude_bridge.hooks.call import HookCall
from claude_bridge.ids import HookEventID, SessionID, ThreadID
from claude_bridge.store import Outbox, Thread, ThreadStore, create_database
from claude_bridge.store.approvals import ApprovalStore
from claude_bridge.store.session_messages import SessionInbox
from claude_bridge.store.thread_control import ThreadControlStore

T = "t1"


@dataclass
class Env:
    outbox: Outbox
    inbox: SessionInbox
    controls: ThreadControlStore
    approvals: Approvals
    store: ApprovalStore
    signals: Signals
    responder: Responder
    thread: Thread
    thread_store: ThreadStore
    settled: list[None] = field(default_factory=list)
    sent: int = 0

    async def hook(
        self, name: str, *, token: str | None = "laptop", connected: bool = True, **fields: Any
    ) -> dict[str, Any]:
        data = {"session_id": "s1", "hook_event_name": name, **fields}
        event = parse_hook_event(data)
        hook_id = await self.outbox.append(T, name, json.dumps(data), token)
        call = HookCall(HookEventID(hook_id), token, connected=lambda: connected)
        return await self.responder(event, self.thread, call)

    async def say(self, body: str, sender: str = "@alice:x") -> None:
        self.sent += 1
        assert await self.inbox.queue(f"$m{self.sent}", T, "!room", sender, body)
        self.signals.fire(thread_key(T))


async def make_env(store_url: str, **options: Any) -> AsyncIterator[Env]:
    db = create_database(store_url)
    await db.start()
    thread_store = ThreadStore(db)
    thread = await thread_store.ensure(
        Thread(
            ThreadID(T), SessionID("s1"), "@claude-t1:x", "#claude-thread-t1:x", token_name="laptop"
        )
    )
    opts = ControlConfig(**options)
    signals = Signals()
    store = ApprovalStore(db)
    settled: list[None] = []
    approvals = Approvals(
        store, signals, timeout=opts.approval_timeout, on_settled=lambda: settled.append(None)
    )
    inbox = SessionInbox(db)
    controls = ThreadControlStore(db)
    # As Control.start does: answers consult the hints before they query.
    await controls.load_hint()
    await inbox.load_hint()
    responder = Responder(
        opts, controls, MessageQueue(inbox, opts.message_budget), approvals, signals,
        on_delivered=lambda: None,
    )  # fmt: skip
    try:
        yield Env(
            Outbox(db),
            inbox,
            controls,
            approvals,
            store,
            signals,
            responder,
            thread,
            thread_store,
            settled,
        )
    finally:
        signals.close()
        await db.stop()


@pytest.fixture
async def env(store_url: str) -> AsyncIterator[Env]:
    async for e in make_env(store_url, approval_timeout=30, max_hold=30):
        yield e


def context(answer: dict[str, Any]) -> str:
    return str(answer["hookSpecificOutput"]["additionalContext"])


async def test_mid_turn_answers_carry_each_message_once(env: Env) -> None:
    assert await env.hook("PostToolUse", tool_name="Bash") == {}
    await env.say("first")
    await env.say("second", "@bob:x")
    answer = await env.hook("PreToolUse", tool_name="Bash")
    assert answer == {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "additionalContext": "Message from @alice:x via Matrix:\n> first\n\n"
            "Message from @bob:x via Matrix:\n> second",
        }
    }
    assert await env.hook("PostToolUse", tool_name="Bash") == {}
    assert await env.inbox.count_queued(T) == 0


async def test_no_message_goes_where_nobody_reads_it(env: Env) -> None:
    await env.say("keep me")
    data = {"session_id": "s1", "hook_event_name": "PostToolUse"}
    replay = HookCall(
        HookEventID(await env.outbox.append(T, "PostToolUse", "{}", "laptop")),
        "laptop",
        replayed=True,
    )
    assert await env.responder(parse_hook_event(data), env.thread, replay) == {}
    assert await env.hook("PostToolUse", token="other-host") == {}  # not this session's host
    assert await env.hook("PostToolUse", connected=False) == {}  # Claude Code gave up
    assert await env.inbox.count_queued(T) == 1
    assert "keep me" in context(await env.hook("UserPromptSubmit", prompt="hi"))


async def test_concurrent_hooks_never_carry_a_message_twice(store_url: str) -> None:
    async for env in make_env(store_url, message_budget=500):
        for i in range(40):
            await env.say(f"message {i:02d} " + "x" * 60)
        answers = await asyncio.gather(*(env.hook("PostToolUse") for _ in range(12)))
        carried = [
            line.removeprefix("Message from @alice:x via Matrix:\n> message ")[:2]
            for a in answers
            if a
            for line in context(a).split("\n\n")
        ]
        rest = []
        while answer := await env.hook("PostToolUse"):
            rest += [line.split("message ")[1][:2] for line in context(answer).split("\n\n")]
        everything = carried + rest
        assert sorted(everything) == [f"{i:02d}" for i in range(40)]  # each exactly once
        for answer in answers:  # and in order within one answer
            if answer:
                ids = [line.split("message ")[1][:2] for line in context(answer).split("\n\n")]
                assert ids == sorted(ids)


async def test_a_stop_request_is_carried_by_exactly_one_answer(env: Env) -> None:
    await env.controls.request_stop(T, "@alice:x")
    assert await env.hook("Notification", message="idle") == {}  # not a tool-loop event
    assert await env.hook("PostToolUse", connected=False) == {}  # nobody to tell: keep it
    assert await env.hook("PostToolUse") == {
        "continue": False,
        "stopReason": "Stopped from Matrix by @alice:x",
    }
    assert await env.hook("PostToolUse") == {}


async def test_stop_blocks_with_messages_within_the_block_limit(store_url: str) -> None:
    async for env in make_env(store_url, stop_block_limit=2):
        assert await env.hook("Stop", stop_hook_active=False) == {}
        await env.say("one")
        assert (await env.hook("Stop", stop_hook_active=False))["decision"] == "block"
        await env.say("two")
        assert (await env.hook("Stop", stop_hook_active=True))["reason"].endswith("two")
        await env.say("three")
        # A third block in a row would pass Claude Code's cap in a tighter setup: not carried.
        assert await env.hook("Stop", stop_hook_active=True) == {}
        assert await env.inbox.count_queued(T) == 1
        # A new turn starts a new chain.
        assert (await env.hook("Stop", stop_hook_active=False))["reason"].endswith("three")


async def test_listen_mode_holds_stop_until_a_message_or_release(env: Env) -> None:
    await env.controls.set_listen(T, 2**62, "@alice:x")
    held = asyncio.create_task(env.hook("Stop"))
    await until(lambda: env.signals.holding(thread_key(T)) == 1)
    assert not env.responder.idle(T)  # the waiter stays out of a held Stop's way
    await env.say("go on")
    assert (await asyncio.wait_for(held, 10))["reason"].endswith("go on")

    held = asyncio.create_task(env.hook("Stop", stop_hook_active=True))
    await until(lambda: env.signals.holding(thread_key(T)) == 1)
    await env.controls.request_stop(T, "@bob:x")
    env.signals.fire(thread_key(T))
    assert (await asyncio.wait_for(held, 10)) == {
        "continue": False,
        "stopReason": "Stopped from Matrix by @bob:x",
    }

    held = asyncio.create_task(env.hook("Stop"))
    await until(lambda: env.signals.holding(thread_key(T)) == 1)
    env.signals.close()  # the bridge is stopping
    assert (await asyncio.wait_for(held, 10)) == {}


async def test_idle_tracking_for_the_waiter(store_url: str) -> None:
    async for env in make_env(store_url, idle_after=3600):
        assert env.responder.idle(T)  # nothing seen yet (e.g. after a restart)
        await env.hook("PreToolUse", tool_name="Bash")
        assert not env.responder.idle(T)
        await env.hook("MessageDisplay", delta="…")
        assert not env.responder.idle(T)
        await env.hook("Stop")
        assert env.responder.idle(T)
    async for env in make_env(store_url, idle_after=0):
        await env.hook("PreToolUse", tool_name="Bash")
        assert env.responder.idle(T)  # quiet for idle_after: e.g. interrupted in the terminal


PERMISSION = {"tool_name": "Bash", "tool_input": {"command": "make deploy"}}


async def hold(env: Env, **fields: Any) -> tuple[asyncio.Task[dict[str, Any]], Any]:
    task = asyncio.create_task(env.hook("PermissionRequest", **PERMISSION, **fields))
    await until(lambda: bool(env.approvals._held))
    # Counted as held just before its row is written: wait for the row too.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not (pending := await env.store.pending(T)):
        assert loop.time() < deadline, "the held request was never stored"
        await asyncio.sleep(0.01)
    [approval] = pending
    return task, approval


async def test_permission_request_held_until_decided(env: Env) -> None:
    task, approval = await hold(env, permission_suggestions=[{"type": "setMode", "mode": "x"}])
    assert not task.done()
    assert await env.approvals.decide(
        approval, "allowed_always", "@alice:x", reason=None, event_id="$r"
    )
    assert not await env.approvals.decide(approval, "denied", "@bob:x", reason=None, event_id="$s")
    answer = await asyncio.wait_for(task, 10)
    assert answer["hookSpecificOutput"]["decision"] == {
        "behavior": "allow",
        "updatedPermissions": [{"type": "setMode", "mode": "x"}],
    }
    stored = await env.store.get(approval.hook_event_id)
    assert stored is not None and (stored.state, stored.decided_by) == (
        "allowed_always",
        "@alice:x",
    )
    assert env.settled  # the room gets told


async def test_permission_request_ends_without_a_decision(store_url: str) -> None:
    async for env in make_env(store_url, approval_timeout=0.3):
        task, approval = await hold(env)
        assert await asyncio.wait_for(task, 10) == {}
        assert (await env.store.get(approval.hook_event_id)).state == "timed_out"  # type: ignore[union-attr]

    async for env in make_env(store_url, approval_timeout=30):
        # The terminal answered: the call ran and its PostToolUse arrived.
        task, approval = await hold(env)
        await env.hook("PostToolUse", tool_name="Bash", tool_input={"command": "other"})
        assert not task.done()  # another call does not settle it
        await env.hook("PostToolUse", **PERMISSION)
        assert await asyncio.wait_for(task, 10) == {}
        settled = await env.store.get(approval.hook_event_id)
        assert settled is not None and settled.state == "answered_elsewhere"
        assert settled.reason == "answered in the terminal"

        # The bridge stopping answers {} at once and says why.
        task, approval = await hold(env)
        env.signals.close()
        assert await asyncio.wait_for(task, 10) == {}
        stopped = await env.store.get(approval.hook_event_id)
        assert stopped is not None and stopped.reason == "the bridge stopped before a decision"


async def until(check: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_what_was_pending_before_a_restart_is_still_answered(store_url: str) -> None:
    """The hints are loaded from the store: a stop and a message left from a previous run."""
    async with contextlib.aclosing(make_env(store_url)) as envs:
        async for env in envs:
            await env.say("left over")
            await env.controls.request_stop(T, "@bob:x")
    async with contextlib.aclosing(make_env(store_url)) as envs:
        async for env in envs:
            env.sent = 1  # the first run's Matrix event ids are taken
            assert env.controls.may_have_stop(T) and env.inbox.queued_hint.may_have(T)
            assert (await env.hook("PostToolUse", tool_name="Bash"))["continue"] is False
            assert "left over" in context(await env.hook("PreToolUse", tool_name="Bash"))
            # Both found empty once: from now on the hook path does not ask the store.
            assert await env.hook("PreToolUse", tool_name="Bash") == {}
            assert not env.controls.may_have_stop(T) and not env.inbox.queued_hint.may_have(T)
            await env.say("new")
            assert "new" in context(await env.hook("PostToolUse", tool_name="Bash"))


async def test_messages_claimed_by_an_answer_that_failed_go_back_to_the_queue(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Composing the answer fails after it claimed the messages: it answers ``{}``, so they are
    in no answer, and go back to the queue at once for the next hook."""
    from claude_bridge.control import responder as responder_module

    await env.say("run the linter")

    def broken(*_: Any) -> str:
        raise RuntimeError("composing failed")

    monkeypatch.setattr(responder_module, "compose", broken)
    assert await env.hook("PostToolUse", tool_name="Bash") == {}
    assert await env.inbox.count_queued(T) == 1
    monkeypatch.undo()
    assert "run the linter" in context(await env.hook("PostToolUse", tool_name="Bash"))
    assert await env.inbox.count_queued(T) == 0
