"""What the tests of the runner's side of the bridge share (``test_runner_commands.py``,
``test_runner_typing.py``, ``test_runner_poll.py``, ``security/test_runner_attacks.py``): a
minimal runner (``runner_poller.py``) as a fixture, a bridge that lets alice launch in ``web``,
the chat with the bot, and an admin's ``new`` as the runner sees it.

Fixtures here are imported by name into each test file that uses them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from claude_bridge.app import Bridge
from tests.e2e.conftest import HookPoster, Stack, StartBridge, hook_payload
from tests.e2e.runner_poller import Poller
from tests.e2e.test_control import command
from tests.matrix_client import MatrixTestClient

BOT = "@claudebot:localhost"
ADMIN, ALICE = "@admin:localhost", "@alice:localhost"
LAUNCH = {"bridge": {"launch": {ALICE: ["web"]}}}
"""admin is an admin; alice, an operator, may launch in project ``web``."""
OTHER = "desk-host-secret-0123456789"
"""The secret of a second hook token (``desk``), for the tests of one token against another."""


@pytest.fixture
async def poller(stack: Stack) -> AsyncIterator[Poller]:
    """A runner of token laptop, host laptop, offering projects api and web."""
    p = Poller(f"http://{stack.config['hooks']['listen']}")
    yield p
    await p.close()


@pytest.fixture
async def launching(start_bridge: StartBridge) -> Bridge:
    return await start_bridge(**LAUNCH)


async def bot_chat(user: MatrixTestClient) -> str:
    dm = await user.create_room(invite=[BOT], is_direct=True)
    await user.wait_for(lambda e: e["sender"] == BOT and e["type"] == "m.room.message", room_id=dm)
    return dm


async def ask(user: MatrixTestClient, room: str, text: str, sender: str = BOT) -> str:
    """Send ``text`` and return the body of the bridge's reply to it."""
    return await command(user, room, sender, text)


async def jobs_of(bridge: Bridge) -> list[dict[str, Any]]:
    rows = await bridge.db.fetch(
        "SELECT id, kind, session_id, requested_by, state FROM runner_jobs WHERE kind <> 'exit' "
        "ORDER BY created_at"
    )
    return [dict(r) for r in rows]


async def started(
    stack: Stack, bridge: Bridge, poller: Poller, dm: str, text: str = "new api write the tests"
) -> tuple[dict[str, Any], str]:
    """An admin's ``new``: the job the runner gets, and the room (joined by admin and alice)."""
    await poller.poll()
    answer = await ask(stack.users["admin"], dm, text)
    assert "Starting Claude Code in `api` on `laptop`" in answer, answer
    [job] = await poller.poll()
    thread = await bridge.threads.for_session(job["session_id"])
    assert thread is not None and thread.room_id is not None
    for name in ("admin", "alice"):
        await stack.users[name].wait_for_invite(thread.room_id)
        await stack.users[name].join(thread.room_id)
    return job, thread.room_id


def running(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "session_id": job["session_id"],
        "project": job["project"],
        "tmux": f"claude-{job['project']}-{job['session_id'][:8]}",
        "job_id": job["id"],
        "state": "running",
    }


async def idle_runner_session(
    stack: Stack, bridge: Bridge, poller: Poller, hooks: HookPoster
) -> tuple[str, str, str]:
    """An admin's ``new``, started by the runner and sitting at its prompt: (session, room,
    ghost)."""
    job, room = await started(stack, bridge, poller, await bot_chat(stack.users["admin"]))
    session = job["session_id"]
    poller.sessions = [running(job)]
    await poller.settle(job)
    for name in ("SessionStart", "Stop"):
        assert (await hooks.post(hook_payload(name, session)))[0] == 200
    return session, room, f"@claude-{session}:localhost"
