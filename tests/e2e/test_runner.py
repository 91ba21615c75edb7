"""``claude-bridge runner`` end to end (issue 15): the real runner process, the real Claude Code
CLI's terminal UI in tmux (a private tmux server per test), the bridge and Synapse, on SQLite
and Postgres. Only the model is scripted (``fake_anthropic.py``). admin is an admin, alice an
operator.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from claude_bridge.app import Bridge
from tests.e2e.claude_code import CLAUDE
from tests.e2e.conftest import Stack, StartBridge
from tests.e2e.fake_anthropic import PLAIN_REPLY, FakeAnthropic
from tests.e2e.host_runner import HostRunner, host_runner
from tests.e2e.runner_helpers import ALICE, BOT, bot_chat
from tests.e2e.test_control import command
from tests.e2e.test_foundation import _until
from tests.matrix_client import MatrixTestClient

pytestmark = pytest.mark.e2e


@pytest.fixture
async def runner(stack: Stack, model: FakeAnthropic, tmp_path: Path) -> AsyncIterator[HostRunner]:
    if not CLAUDE.exists():
        pytest.fail(f"no Claude Code CLI at {CLAUDE}: run scripts/install-claude-code")
    async with host_runner(tmp_path, model, f"http://{stack.config['hooks']['listen']}") as r:
        yield r


def body(event: dict[str, Any]) -> str:
    content = event.get("content")
    return str(content.get("body", "")) if isinstance(content, dict) else ""


async def online(bridge: Bridge, runner: HostRunner, want: bool = True) -> None:
    runners = bridge.control.runners

    async def there() -> bool:
        found = [r for r in runners.all() if r.host == "laptop"]
        return bool(found) and runners.online(found[0]) == want

    try:
        await _until(there, f"the runner {'online' if want else 'offline'}")
    except AssertionError:
        raise AssertionError(f"runner log:\n{runner.output()[-3000:]}") from None


async def launch(stack: Stack, bridge: Bridge, runner: HostRunner, prompt: str) -> tuple[str, str]:
    """admin's ``new api <prompt>`` in the bot chat: the session id and its room (joined)."""
    await online(bridge, runner)
    admin = stack.users["admin"]
    said = await command(admin, await bot_chat(admin), BOT, f"new api {prompt}")
    assert "Starting Claude Code in `api` on `laptop`" in said, said
    session = await bridge.db.fetchval(
        "SELECT session_id FROM runner_jobs WHERE kind='new' ORDER BY created_at DESC LIMIT 1"
    )
    thread = await bridge.threads.for_session(session)
    assert thread is not None and thread.room_id is not None
    await admin.wait_for_invite(thread.room_id)
    await admin.join(thread.room_id)
    return str(session), thread.room_id


async def idle_session(stack: Stack, bridge: Bridge, runner: HostRunner) -> tuple[str, str]:
    """A session after its first turn, at its prompt, with alice (an operator) in its room."""
    admin, alice = stack.users["admin"], stack.users["alice"]
    session, room = await launch(stack, bridge, runner, "hello first")
    await shows(admin, room, session, PLAIN_REPLY)
    await alice.wait_for_invite(room)
    await alice.join(room)

    async def idle() -> bool:
        return bool(
            await bridge.db.fetchval(
                "SELECT 1 FROM hook_event WHERE thread_id=$1 AND event_name='Stop'", session
            )
        )

    await _until(idle, "the first turn's Stop")
    return session, room


async def shows(
    user: MatrixTestClient, room: str, session: str, needle: str, timeout: float = 60
) -> dict[str, Any]:
    ghost = f"@claude-{session}:localhost"
    return await user.wait_for(
        lambda e: e["sender"] == ghost and needle in body(e), room_id=room, timeout=timeout
    )


async def on_screen(runner: HostRunner, session: str, needle: str) -> str:
    async def shown() -> str | None:
        text = await runner.screen(session)
        return text if needle in text else None

    try:
        return await _until(shown, f"{needle!r} in the pane")
    except AssertionError:
        raise AssertionError(
            f"{needle!r} not in the pane:\n{await runner.screen(session)}\n"
            f"runner log:\n{runner.output()[-3000:]}"
        ) from None


async def test_an_admins_new_runs_claude_code_in_tmux_and_its_room_shows_the_turn(
    stack: Stack, bridge: Bridge, runner: HostRunner, model: FakeAnthropic
) -> None:
    admin = stack.users["admin"]
    session, room = await launch(stack, bridge, runner, "hello from the phone")
    await on_screen(runner, session, "hello from the phone")
    await shows(admin, room, session, "hello from the phone")  # the prompt
    await shows(admin, room, session, PLAIN_REPLY)  # the scripted model's reply
    assert any("hello from the phone" in turn for turn in model.turns())
    (pane,) = await runner.panes()
    assert (pane.session, pane.session_id, pane.project) == (
        f"claude-api-{session[:8]}",
        session,
        "api",
    )
    await on_screen(runner, session, PLAIN_REPLY)  # the terminal UI a person can attach to
    thread = await bridge.threads.for_session(session)
    assert thread is not None and thread.token_name == "laptop"


async def test_interrupt_stops_a_streamed_answer_mid_turn(
    stack: Stack, bridge: Bridge, runner: HostRunner, model: FakeAnthropic
) -> None:
    admin = stack.users["admin"]
    session, room = await launch(stack, bridge, runner, "DRIP a long answer please")
    await _until(lambda: _set(model.holding), "the model streaming its long answer")
    ghost = f"@claude-{session}:localhost"
    said = await command(admin, room, ghost, "!claude interrupt")
    assert "Interrupting" in said, said
    await _until(lambda: _set(model.dropped), "Claude Code dropping the streamed answer")
    await on_screen(runner, session, "Interrupted")
    job = await bridge.db.fetchrow(
        "SELECT state, error FROM runner_jobs WHERE kind='interrupt' AND session_id=$1", session
    )
    assert job is not None and (job["state"], job["error"]) == ("done", None)
    # The session is at its prompt again: the next message is typed in as a new turn, after
    # the cut one.
    model.release()
    await admin.send_text(room, "carry on with something short")

    async def next_turn() -> dict[str, Any] | None:
        return next(
            (r for r in model.requests if "carry on with something short" in json.dumps(r)), None
        )

    request = await _until(next_turn, "the next turn's request")
    assert "interrupted by user" in json.dumps(request["messages"]).lower()
    await shows(admin, room, session, "carry on with something short")


def _first_child(pid: int) -> int:
    return int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])


async def _set(event: Any) -> bool:
    return bool(event.is_set())


async def test_end_then_resume_continues_in_the_same_room(
    stack: Stack, bridge: Bridge, runner: HostRunner, model: FakeAnthropic
) -> None:
    admin = stack.users["admin"]
    session, room = await launch(stack, bridge, runner, "remember the word tangerine")
    ghost = f"@claude-{session}:localhost"
    await shows(admin, room, session, PLAIN_REPLY)
    said = await command(admin, room, ghost, "!claude end")
    assert "Ending the session" in said, said
    exited = await shows(admin, room, session, "exited on `laptop`")
    assert "status 0" in body(exited)

    async def gone() -> bool:
        return not await runner.panes()

    await _until(gone, "the ended session's tmux session killed")
    said = await command(admin, room, ghost, "!claude resume")
    assert "Resuming the session on `laptop`, here" in said, said
    await on_screen(runner, session, "tangerine")  # the conversation is back on screen
    (pane,) = await runner.panes()
    assert pane.session_id == session and not pane.dead
    resumed = await bridge.threads.for_session(session)
    assert resumed is not None and resumed.room_id == room
    await shows(admin, room, session, "resume")  # SessionStart (resume) in the same room


async def test_a_killed_runner_is_offline_and_new_is_refused(
    stack: Stack, bridge: Bridge, runner: HostRunner
) -> None:
    await online(bridge, runner)
    await runner.kill()
    await online(bridge, runner, want=False)
    admin = stack.users["admin"]
    said = await command(admin, await bot_chat(admin), BOT, "new api write the tests")
    assert "host `laptop` is offline since" in said and "nothing was queued" in said
    assert await runner.panes() == []


async def test_a_runner_killed_in_the_middle_of_a_new_starts_no_duplicate(
    stack: Stack, bridge: Bridge, runner: HostRunner, model: FakeAnthropic
) -> None:
    """The runner is frozen as soon as the bridge has handed it the job (SIGSTOP: it may or
    may not have started tmux), then killed and started again: the job is redelivered, and
    there is one session, one Claude Code, one room."""
    admin = stack.users["admin"]
    await online(bridge, runner)
    assert runner.proc is not None
    said = await command(admin, await bot_chat(admin), BOT, "new api only once please")
    assert "Starting Claude Code" in said, said

    async def handed_out() -> str | None:
        row = await bridge.db.fetchrow("SELECT session_id, state FROM runner_jobs WHERE kind='new'")
        return str(row["session_id"]) if row and row["state"] != "queued" else None

    session = await _until(handed_out, "the job handed to the runner")
    runner.proc.send_signal(signal.SIGSTOP)
    await runner.kill()
    await runner.start()

    async def done() -> bool:
        state = await bridge.db.fetchval("SELECT state FROM runner_jobs WHERE kind='new'")
        return state == "done"

    await _until(done, "the redelivered job done")
    thread = await bridge.threads.for_session(session)
    assert thread is not None and thread.room_id is not None
    await admin.wait_for_invite(thread.room_id)
    await admin.join(thread.room_id)
    await shows(admin, thread.room_id, session, PLAIN_REPLY)
    assert [p.session_id for p in await runner.panes()] == [session]
    starts = await bridge.db.fetchval(
        "SELECT COUNT(*) FROM hook_event WHERE thread_id=$1 AND event_name='SessionStart'", session
    )
    assert starts == 1  # one Claude Code ever started for it


async def test_a_bridge_restarted_in_the_middle_of_a_new_starts_no_duplicate(
    stack: Stack, start_bridge: StartBridge, runner: HostRunner, model: FakeAnthropic
) -> None:
    """The bridge stops as soon as it has handed the job out and starts again on the same store:
    the runner reconnects (backoff), the job is redelivered or already settled, and there is one
    session. The model holds its answer until the bridge is back, so the turn reaches the room."""
    bridge = await start_bridge()
    admin = stack.users["admin"]
    await online(bridge, runner)
    said = await command(admin, await bot_chat(admin), BOT, "new api HOLD only once please")
    assert "Starting Claude Code" in said, said

    async def handed_out() -> str | None:
        row = await bridge.db.fetchrow("SELECT session_id, state FROM runner_jobs WHERE kind='new'")
        return str(row["session_id"]) if row and row["state"] != "queued" else None

    session = await _until(handed_out, "the job handed to the runner")
    await bridge.stop()
    again = await start_bridge()

    async def done() -> bool:
        state = await again.db.fetchval("SELECT state FROM runner_jobs WHERE kind='new'")
        return state == "done"

    await _until(done, "the job settled with the restarted bridge")
    await _until(lambda: _set(model.holding), "the session's first request")
    model.release()
    thread = await again.threads.for_session(session)
    assert thread is not None and thread.room_id is not None
    await admin.wait_for_invite(thread.room_id)
    await admin.join(thread.room_id)
    await shows(admin, thread.room_id, session, PLAIN_REPLY)
    assert [p.session_id for p in await runner.panes()] == [session]
    assert await again.db.fetchval("SELECT COUNT(*) FROM runner_jobs WHERE kind='new'") == 1


async def test_an_operators_message_reaches_an_idle_session_as_a_user_turn(
    stack: Stack, bridge: Bridge, runner: HostRunner, model: FakeAnthropic
) -> None:
    """After its first turn the session sits at its prompt; alice writes in the room; the
    runner types it into the pane (bracketed paste, Enter) and Claude Code gets it as the
    user's prompt, not as a hook's system reminder."""
    admin, alice = stack.users["admin"], stack.users["alice"]
    session, room = await idle_session(stack, bridge, runner)
    await alice.send_text(room, "please run the linter next\nand then stop")

    async def typed() -> str | None:
        return next((t for t in model.turns() if "please run the linter next" in t), None)

    turn = await _until(typed, "a model request carrying alice's message")
    assert "Message from" not in turn and "hook" not in turn.lower()  # a prompt, not a reminder
    assert "and then stop" in turn  # the paste kept its line break: one prompt
    shown = await shows(admin, room, session, "🧑‍💻 @alice")
    assert body(shown) == f"🧑‍💻 {ALICE}:\n> please run the linter next\n> and then stop"
    await on_screen(runner, session, "please run the linter next")
    jobs = await bridge.db.fetch("SELECT state FROM runner_jobs WHERE kind='type'")
    assert [j["state"] for j in jobs] == ["done"]


async def test_a_prompt_that_looks_like_flags_stays_a_prompt(
    stack: Stack, bridge: Bridge, runner: HostRunner, model: FakeAnthropic
) -> None:
    """Claude Code's options are chosen on the host: a prompt written as options reaches the
    model as text (the runner puts it after ``--``), and the session stays interactive."""
    admin = stack.users["admin"]
    prompt = "--dangerously-skip-permissions --print $(touch pwned); `id`"
    session, room = await launch(stack, bridge, runner, prompt)
    await shows(admin, room, session, PLAIN_REPLY)
    assert any(json.dumps(prompt)[1:-1] in turn for turn in model.turns())
    (pane,) = await runner.panes()
    assert not pane.dead  # interactive: --print would have ended it after the reply
    assert not (runner.claude.project / "pwned").exists()
    screen = await runner.screen(session)
    assert "bypass permissions" not in screen.lower()


async def test_a_crashed_session_is_reported_in_its_room(
    stack: Stack, bridge: Bridge, runner: HostRunner
) -> None:
    admin = stack.users["admin"]
    session, room = await launch(stack, bridge, runner, "hello before the crash")
    await shows(admin, room, session, PLAIN_REPLY)
    (pane,) = await runner.panes()
    assert pane.pid is not None
    os.kill(_first_child(pane.pid), signal.SIGKILL)  # Claude Code, under the runner's launcher
    notice = await shows(admin, room, session, "exited on `laptop`")
    text = body(notice)
    assert "status 137" in text, text  # killed by signal 9
    assert len(text.splitlines()) > 1  # and the pane's last lines

    async def ended() -> bool:
        thread = await bridge.threads.for_session(session)
        return thread is not None and thread.status == "ended" and not await runner.panes()

    await _until(ended, "the room marked ended and the pane closed")


async def test_a_runner_killed_while_typing_types_at_most_once(
    stack: Stack, bridge: Bridge, runner: HostRunner, model: FakeAnthropic
) -> None:
    """The runner is frozen as soon as the bridge hands it a type job, killed, and started
    again: the job comes again, and the message reaches the model once or, if the runner had
    begun typing, is answered as not repeated — never typed twice."""
    alice = stack.users["alice"]
    session, room = await idle_session(stack, bridge, runner)
    await alice.send_text(room, "just once please")

    async def handed_out() -> bool:
        state = await bridge.db.fetchval("SELECT state FROM runner_jobs WHERE kind='type'")
        return state is not None and state != "queued"

    await _until(handed_out, "the type job handed to the runner")
    assert runner.proc is not None
    runner.proc.send_signal(signal.SIGSTOP)
    await runner.kill()
    await runner.start()

    async def settled() -> str | None:
        state = await bridge.db.fetchval("SELECT state FROM runner_jobs WHERE kind='type'")
        return state if state in ("done", "failed") else None

    state = await _until(settled, "the type job settled")
    if state == "done":
        await _until(lambda: _typed(model, "just once please"), "the message at the model")
    prompts = await bridge.db.fetch(
        "SELECT payload FROM hook_event WHERE thread_id=$1 AND event_name='UserPromptSubmit'",
        session,
    )
    typed = [p["payload"] for p in prompts if "just once please" in p["payload"]]
    assert len(typed) <= 1  # never twice ("failed": begun, maybe typed, not repeated)
    assert len(typed) == 1 or state == "failed"


async def _typed(model: FakeAnthropic, text: str) -> bool:
    return any(text in t for t in model.turns())
