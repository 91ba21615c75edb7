"""Second round of attacks on the trust boundary (issue 12), on real Synapse.

Each test is a hole found after the first round of fixes: it failed on the code it was found in.
"""

from __future__ import annotations

from typing import Any

import pytest

from claude_bridge.app import Bridge
from tests.e2e.conftest import HookPoster, Stack
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
