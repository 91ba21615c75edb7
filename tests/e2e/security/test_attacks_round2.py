"""Second round of attacks on the trust boundary (issue 12), on real Synapse.

Each test is a hole found after the first round of fixes: it failed on the code it was found in.
"""

from __future__ import annotations

from typing import Any

import pytest

from claude_bridge.app import Bridge
from tests.e2e.conftest import HOOK_TOKEN, HookPoster, Stack, hook_payload
from tests.e2e.security.rooms import WAIT, open_room
from tests.matrix_client import MatrixTestClient

pytestmark = pytest.mark.e2e

BOT = "@claudebot:localhost"
ONE_STORE = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


async def reply_in(user: MatrixTestClient, room: str, sender: str, asked: str) -> dict[str, Any]:
    """The event ``sender`` sent in reply to ``asked``."""
    found: dict[str, Any] = await user.wait_for(
        lambda e: (
            e["sender"] == sender
            and e["type"] == "m.room.message"
            and (e["content"].get("m.relates_to") or {}).get("m.in_reply_to", {}).get("event_id")
            == asked
        ),
        room_id=room,
        timeout=WAIT,
    )
    return found


def shown(event: dict[str, Any]) -> str:
    content = event["content"]
    return f"{content.get('body', '')}\n{content.get('formatted_body', '')}"


@ONE_STORE
async def test_a_person_shut_out_of_a_room_cannot_read_it_in_the_bot_chat(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    """Victor (a global viewer) is shut out of one thread with ``!claude invite … none``. The
    bot's chat must not keep showing him that thread: not in its welcome, ``threads`` or
    ``status``. The thread he may still see stays listed (so the asserts can fail)."""
    secret_session, secret_room, ghost = await open_room(stack, bridge, hooks)
    open_session, _open_room, _ = await open_room(stack, bridge, hooks)
    admin, victor = stack.users["admin"], stack.users["victor"]
    await admin.wait_for_invite(secret_room, timeout=WAIT)
    await admin.join(secret_room)
    asked = await admin.send_text(secret_room, f"!claude invite {victor.user_id} none")
    assert "no access" in shown(await reply_in(admin, secret_room, ghost, asked))

    dm = await victor.create_room(invite=[BOT], is_direct=True)
    welcome = await victor.wait_for(
        lambda e: e["sender"] == BOT and e["type"] == "m.room.message", room_id=dm, timeout=WAIT
    )
    answers = {"welcome": shown(welcome)}
    for command in ("threads", "threads --all", "status"):
        asked = await victor.send_text(dm, command)
        answers[command] = shown(await reply_in(victor, dm, BOT, asked))
    for what, text in answers.items():
        assert open_session.lower() in text, (what, text)
        assert secret_session.lower() not in text, (what, text)


SLACK_TOKEN = "xoxb-123456789012-1234567890123-abcdefghijklmnopqrstuvwx"


@ONE_STORE
async def test_a_session_id_cannot_carry_a_secret_behind_the_redaction_mark(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    """The session id becomes the ghost's user id and the room alias, which are never scrubbed,
    so one holding a secret is refused. The check looked for ``[redacted]`` in the scrubbed id
    and not in the original: an id that already held ``[redacted]`` passed with a Slack token
    (all lowercase, so the alias keeps it whole) beside it."""
    for session in (f"[redacted]{SLACK_TOKEN}", f"a[redacted]-{SLACK_TOKEN}"):
        status, body = await hooks.post(hook_payload("SessionStart", session))
        assert status == 422 and "session_id" in body["error"], (session, status, body)
        assert await bridge.threads.for_session(session) is None
    assert await bridge.db.fetchval("SELECT COUNT(*) FROM thread") == 0
    # An ordinary id still opens its thread (so the asserts above can fail).
    assert (await hooks.post(hook_payload("SessionStart", "ordinary-session")))[0] == 200
    assert await bridge.threads.for_session("ordinary-session") is not None


@ONE_STORE
async def test_a_session_id_cannot_carry_the_bridges_own_secrets(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    """The session-id check uses the bridge's outgoing scrubber, which knows the as_token and
    the hook tokens (random strings no built-in pattern matches), not the default one."""
    as_token = stack.config["appservice"]["as_token"]
    for session in (f"s-{as_token}", f"s-{HOOK_TOKEN}"):
        status, body = await hooks.post(hook_payload("SessionStart", session))
        assert status == 422 and "session_id" in body["error"], (session, status, body)
        assert await bridge.threads.for_session(session) is None
    assert (await hooks.post(hook_payload("SessionStart", "plain-session")))[0] == 200
