"""The real Claude Code CLI, with the hooks ``install-hooks`` writes, against the bridge and Synapse.

Only the model is scripted (``fake_anthropic.py``, reached through ``ANTHROPIC_BASE_URL``):
the ``claude`` binary, its hook runner, the command shim and ``http`` hooks, the bridge and
Synapse are the real ones, on both stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from claude_bridge.app import Bridge
from tests.e2e.claude_code import CLAUDE, ClaudeCode
from tests.e2e.conftest import HOOK_TOKEN, Stack, StartBridge
from tests.e2e.fake_anthropic import FEEDBACK_REPLY, PLAIN_REPLY, TOOL_REPLY, FakeAnthropic
from tests.e2e.test_control import delivered_mark, settled_edit
from tests.e2e.test_foundation import _until, _wait_for_room
from tests.matrix_client import MatrixTestClient

pytestmark = pytest.mark.e2e

ALICE = "@alice:localhost"


async def claude_code(
    stack: Stack, model: FakeAnthropic, base: Path, *install_args: str
) -> ClaudeCode:
    if not CLAUDE.exists():
        pytest.fail(f"no Claude Code CLI at {CLAUDE}: run scripts/bootstrap (it needs npm)")
    url = f"http://{stack.config['hooks']['listen']}"
    return await ClaudeCode.install(base, model, url, HOOK_TOKEN, *install_args)


async def joined_room(stack: Stack, bridge: Bridge, session: str) -> tuple[str, MatrixTestClient]:
    room = await _wait_for_room(bridge, session)
    alice = stack.users["alice"]
    await alice.wait_for_invite(room)
    await alice.join(room)
    return room, alice


def body_of(event: dict[str, object]) -> str:
    content = event.get("content")
    return str(content.get("body", "")) if isinstance(content, dict) else ""


@pytest.mark.parametrize("mode", ["http", "durable"])
async def test_a_print_mode_session_is_mirrored(
    stack: Stack, bridge: Bridge, model: FakeAnthropic, tmp_path: Path, mode: str
) -> None:
    """``claude -p`` running a Bash command: every step shows in the session's room, whether
    the hooks are ``http`` ones or all the spooling command shim (``--durable``)."""
    claude = await claude_code(
        stack, model, tmp_path, *(["--durable"] if mode == "durable" else [])
    )
    session = str(uuid.uuid4())

    rc, out, err = await claude.print_mode(
        "RUN: echo hello-from-bash", "--session-id", session, "--allowedTools", "Bash(echo:*)"
    )

    assert (rc, out.strip()) == (0, TOOL_REPLY), err
    room, alice = await joined_room(stack, bridge, session)
    ghost = f"@claude-{session}:localhost"
    in_room = [
        "Session started in demo-app",
        "RUN: echo hello-from-bash",  # the prompt
        "Bash: echo hello-from-bash",  # the tool line
        "$ echo hello-from-bash\nhello-from-bash",  # its output, in the line's thread
        TOOL_REPLY,
        "Session ended",
    ]
    for text in in_room:
        await alice.wait_for(
            lambda e, text=text: e["sender"] == ghost and text in body_of(e), room_id=room
        )
    rows = await bridge.db.fetch(
        "SELECT event_name FROM hook_event WHERE thread_id=$1 ORDER BY id", session
    )
    names = [r["event_name"] for r in rows]
    assert names[:2] == ["SessionStart", "UserPromptSubmit"] and names[-1] == "SessionEnd"
    assert {"PreToolUse", "PostToolUse", "Stop"} <= set(names)
    # Print mode is unattended: the background waiter stepped aside instead of holding the
    # CLI's exit (Claude Code waits up to 30 s for a running asyncRewake hook there).
    assert not bridge.control.waiter.polled(session)


async def test_a_matrix_message_continues_the_turn_through_the_stop_hook(
    stack: Stack, bridge: Bridge, model: FakeAnthropic, tmp_path: Path
) -> None:
    """alice writes while Claude works; the Stop hook's answer hands it over, and the CLI
    sends it to the model as the Stop hook's feedback."""
    claude = await claude_code(stack, model, tmp_path)
    session = str(uuid.uuid4())
    running = asyncio.ensure_future(
        claude.print_mode("HOLD: think it over", "--session-id", session)
    )
    await model.holding.wait()  # mid-turn: the model has the prompt and has not answered
    room, alice = await joined_room(stack, bridge, session)
    sent = await alice.send_text(room, "also update the changelog")

    async def queued() -> bool:
        return bool(await bridge.control.parts.inbox.queued(session))

    await _until(queued, "alice's message queued for the session")
    model.release()
    rc, out, err = await running

    assert rc == 0, err
    turns = model.turns()
    assert len(turns) == 2, turns  # the prompt, then the Stop hook's feedback
    assert "Stop hook feedback" in turns[1]
    # The model request holds the text JSON-encoded: its line breaks are \n there.
    assert (
        json.dumps(f"Message from {ALICE} via Matrix:\n> also update the changelog")[1:-1]
        in (turns[1])
    )
    assert out.strip() == FEEDBACK_REPLY
    await delivered_mark(alice, room, f"@claude-{session}:localhost", sent)


async def test_an_idle_terminal_session_is_woken_from_matrix(
    stack: Stack, bridge: Bridge, model: FakeAnthropic, tmp_path: Path
) -> None:
    """The terminal UI sits at its prompt after a turn; alice writes; the background waiter
    (an asyncRewake Stop hook) wakes the session and the model gets the message."""
    claude = await claude_code(stack, model, tmp_path)
    session = str(uuid.uuid4())
    async with claude.terminal("--session-id", session) as term:
        room, alice = await joined_room(stack, bridge, session)  # SessionStart made the room
        await term.wait_for("❯")
        await term.submit("hello there")

        async def idle_and_waiting() -> bool:
            stop = await bridge.db.fetchval(
                "SELECT 1 FROM hook_event WHERE thread_id=$1 AND event_name='Stop'", session
            )
            return bool(stop) and bridge.control.waiter.waiting(session)

        await _until(idle_and_waiting, "the turn's Stop and the background waiter polling")
        assert len(model.requests) == 1  # the prompt's, answered
        sent = await alice.send_text(room, "please run the linter next")

        async def woken() -> bool:
            return any("please run the linter next" in turn for turn in model.turns())

        await _until(woken, "a model request carrying alice's message")
        framed = f"Message from {ALICE} via Matrix:\n> please run the linter next"
        assert json.dumps(framed)[1:-1] in model.turns()[-1]
        await delivered_mark(alice, room, f"@claude-{session}:localhost", sent)


@pytest.mark.parametrize("decider", ["matrix", "terminal", "denied"])
async def test_a_permission_dialog_is_decided_in_the_room_or_the_terminal(
    stack: Stack, bridge: Bridge, model: FakeAnthropic, tmp_path: Path, decider: str
) -> None:
    """In the terminal UI a Bash call that writes asks for permission. The PermissionRequest
    hook posts it to the room and holds its answer while the terminal shows its own dialog:
    alice's ✅ lets the command run, or the person at the terminal answers first and the room's
    prompt says so. Or alice denies it, after Claude Code's own "needs your permission" (about
    6 s in: folded into the prompt, no second ping); Claude Code sends nothing about a call
    its hook denied, so the bridge marks the call's line."""
    claude = await claude_code(stack, model, tmp_path)
    session = str(uuid.uuid4())
    async with claude.terminal("--session-id", session, "--permission-mode", "default") as term:
        room, alice = await joined_room(stack, bridge, session)
        await term.wait_for("❯")
        await term.submit("RUN: touch decided-elsewhere")
        ghost = f"@claude-{session}:localhost"
        line = await alice.wait_for(
            lambda e: e["sender"] == ghost and body_of(e) == "💻 Bash: touch decided-elsewhere",
            room_id=room,
        )
        prompt = await alice.wait_for(
            lambda e: (
                e["sender"] == ghost
                and "touch decided-elsewhere" in body_of(e)
                and ALICE in e["content"].get("m.mentions", {}).get("user_ids", [])
            ),
            room_id=room,
        )
        await term.wait_for("Do you want to proceed?")  # the terminal is not blocked meanwhile

        async def ran() -> bool:
            return any('"tool_result"' in turn for turn in model.turns())

        if decider == "matrix":
            await alice.react(room, prompt["event_id"], "✅")
            outcome = "Allowed once by alice\n"
        elif decider == "denied":
            await _until(lambda: notification_sent(bridge, session), "Claude Code's notification")
            await alice.react(room, prompt["event_id"], "❌")
            outcome = "Denied by alice\n"
        else:
            # "1. Yes". A new dialog ignores keys for a moment (typed-ahead text must not
            # answer it): press until it is taken.
            for _ in range(50):
                term.press("1")
                with contextlib.suppress(AssertionError):
                    await _until(ran, "the dialog answered", timeout=0.2)
                    break
            outcome = "answered in the terminal"
        await _until(ran, "the command's result (or its denial) back at the model")
        assert (claude.project / "decided-elsewhere").exists() == (decider != "denied")
        await settled_edit(alice, room, prompt["event_id"], outcome)
        if decider != "denied":
            return
        marked = await alice.wait_for(
            lambda e: (
                e["content"].get("m.relates_to", {}).get("rel_type") == "m.replace"
                and e["content"]["m.relates_to"]["event_id"] == line["event_id"]
            ),
            room_id=room,
        )
        assert marked["content"]["m.new_content"]["body"] == (
            "🚫 Bash: touch decided-elsewhere — denied by alice"
        )
        # In a room of two every m.text notifies (the prompt's mirror too); a ping is a
        # highlight, a mention: one, the prompt.
        data = await alice.request(
            "GET", "/_matrix/client/v3/notifications", params={"limit": "100"}
        )
        highlights = [
            n["event"]["event_id"]
            for n in data["notifications"]
            if n["room_id"] == room and {"set_tweak": "highlight"} in n["actions"]
        ]
        assert highlights == [prompt["event_id"]]
        assert "needs your permission" not in str(await alice.messages(room))


async def notification_sent(bridge: Bridge, session: str) -> bool:
    sent = await bridge.db.fetchval(
        "SELECT COUNT(*) FROM hook_event WHERE thread_id=$1 "
        "AND event_name='Notification' AND state='sent'",
        session,
    )
    return bool(sent)


@dataclass
class Outage:
    room: str
    alice: MatrixTestClient
    ghost: str
    spooled: int  # events the command shim held while the bridge was down

    async def bodies(self) -> list[str]:
        """What the session's ghost posted, oldest first."""
        events = await self.alice.messages(self.room)
        return [body_of(e) for e in events if e["sender"] == self.ghost]


async def across_an_outage(
    start_bridge: StartBridge, stack: Stack, claude: ClaudeCode, command: str
) -> Outage:
    """A turn with the bridge up, one running ``command`` while it is stopped, one after it is
    back (the transcripts are readable to it, as on one machine); returns once all is posted."""
    catchup = {
        "catchup": {"transcript_dirs": [str(claude.home / ".claude" / "projects")]},
        "tokens": {"laptop": {"secret": HOOK_TOKEN, "local": True}},  # same machine
    }
    bridge = await start_bridge(hooks=catchup)
    session = str(uuid.uuid4())
    assert (await claude.print_mode("before the outage", "--session-id", session))[0] == 0
    room, alice = await joined_room(stack, bridge, session)
    await bridge.stop()
    allowed = ("--allowedTools", "Bash(echo:*)")
    rc, out, _ = await claude.print_mode(f"RUN: {command}", "--resume", session, *allowed)
    assert (rc, out.strip()) == (0, TOOL_REPLY)  # Claude Code carried on without the bridge
    spooled = len(list((claude.home / ".cache" / "claude-bridge" / "spool").rglob("*.json")))
    bridge = await start_bridge(hooks=catchup)
    assert (await claude.print_mode("after the outage", "--resume", session))[0] == 0
    ghost = f"@claude-{session}:localhost"
    await alice.wait_for(
        lambda e: e["sender"] == ghost and "after the outage" in body_of(e), room_id=room
    )
    await _until(lambda: _drained(bridge), "the outbox delivered")
    return Outage(room, alice, ghost, spooled)


async def test_a_turn_missed_while_the_bridge_was_down_is_caught_up_from_the_transcript(
    stack: Stack, start_bridge: StartBridge, model: FakeAnthropic, tmp_path: Path
) -> None:
    """``http`` hooks fail open while the bridge is down: the turn is lost to them. At the
    session's next event the bridge reads the real CLI's transcript and posts what it missed,
    before that event."""
    claude = await claude_code(stack, model, tmp_path)
    outage = await across_an_outage(start_bridge, stack, claude, "echo while-down")
    bodies = await outage.bodies()
    caught_up = next(i for i, b in enumerate(bodies) if "Caught up after an outage" in b)
    after = bodies[caught_up:]
    assert "🧑\u200d💻 Prompt:\n> RUN: echo while-down" in after  # the missed prompt,
    assert "💻 Bash: echo while-down" in after  # its tool call
    assert TOOL_REPLY in after  # and the reply, recovered from the transcript
    assert after.index(TOOL_REPLY) < after.index("🧑\u200d💻 Prompt:\n> after the outage")


async def test_durable_hooks_spool_through_an_outage_and_post_it_once(
    stack: Stack, start_bridge: StartBridge, model: FakeAnthropic, tmp_path: Path
) -> None:
    """With ``--durable`` every event goes through the command shim, which spools what the
    bridge cannot take and replays it in order at the next call: nothing is lost, nothing is
    posted twice, and no catch-up is needed."""
    claude = await claude_code(stack, model, tmp_path, "--durable")
    outage = await across_an_outage(start_bridge, stack, claude, "echo spooled")
    assert outage.spooled
    bodies = await outage.bodies()
    assert sum("RUN: echo spooled" in b for b in bodies) == 1  # the prompt
    assert sum(b.startswith("💻 Bash: echo spooled") for b in bodies) == 1  # its tool line
    assert bodies.count(TOOL_REPLY) == 1 and bodies.count(PLAIN_REPLY) == 2
    assert not any("Caught up" in b for b in bodies)


async def _drained(bridge: Bridge) -> bool:
    return not await bridge.db.fetchval("SELECT COUNT(*) FROM hook_event WHERE state='pending'")
