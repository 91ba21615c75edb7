"""Everything the bridge sends to a real Synapse is valid by the Matrix spec's JSON schemas.

The bridge talks to Synapse through the recording proxy (``tests/e2e/proxy.py``). A session runs
through it: the mirrored timeline (tool calls, their output, files, a subagent, a streamed
reply), an approval decided by reaction, commands and their replies, a message delivered (the ✓
receipt), the end, a message into the ended room. Then every event and state event it sent, and
every createRoom, is checked against the vendored schemas (``tests/spec_schemas.py``). The
content does not depend on the store, so this runs on SQLite only.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import AsyncIterator
from urllib.parse import unquote

import pytest

from tests.e2e.conftest import HookPoster, Stack, StartBridge, hook_payload, new_session
from tests.e2e.proxy import HomeserverProxy
from tests.e2e.test_control import delivered_mark, permission_request, post_tool_use
from tests.e2e.test_foundation import _until, _wait_for_room
from tests.e2e.test_mirroring import script
from tests.spec_schemas import create_room_problems, event_problems

pytestmark = pytest.mark.e2e

SEND = re.compile(r"^/_matrix/client/v3/rooms/[^/]+/send/([^/]+)/[^/]+$")
STATE = re.compile(r"^/_matrix/client/v3/rooms/[^/]+/state/([^/]+)/?(.*)$")


@pytest.fixture
async def proxy(stack: Stack) -> AsyncIterator[HomeserverProxy]:
    proxy = await HomeserverProxy(stack.config["homeserver"]["address"]).start()
    yield proxy
    await proxy.stop()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_every_request_the_bridge_sends_is_valid_by_the_spec(
    stack: Stack, start_bridge: StartBridge, hooks: HookPoster, proxy: HomeserverProxy
) -> None:
    bridge = await start_bridge(homeserver={"address": proxy.url})
    alice = stack.users["alice"]
    session = new_session()
    for payload in script(session)[:-1]:  # all but the end
        assert (await hooks.post(payload))[0] == 200
    room = await _wait_for_room(bridge, session.lower())
    ghost = f"@claude-{session.lower()}:localhost"
    await alice.wait_for_invite(room)
    await alice.join(room)

    # A message delivered by a hook answer (the ✓ receipt), an approval decided by reaction.
    note = await alice.send_text(room, "please also run the linter")
    await _until(lambda: bridge.control.parts.inbox.queued(session.lower()), "queued")
    answer = (await hooks.post(post_tool_use(session)))[1]
    assert "run the linter" in answer["hookSpecificOutput"]["additionalContext"]
    await delivered_mark(alice, room, ghost, note)
    asked = asyncio.create_task(hooks.post(permission_request(session, "rm -rf build")))
    prompt = await alice.wait_for(
        lambda e: e["sender"] == ghost and "rm -rf build" in e["content"].get("body", ""),
        room_id=room,
    )
    await alice.react(room, prompt["event_id"], "✅")
    assert (await asked)[0] == 200
    # A command and its reply; the end; a message into the ended room and its answer.
    await alice.send_text(room, "!claude status")
    assert (await hooks.post(hook_payload("SessionEnd", session)))[0] == 200
    late = await alice.send_text(room, "one more thing")
    await alice.wait_for(
        lambda e: (
            e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") == late
        ),
        room_id=room,
    )

    async def drained() -> bool:
        return (await bridge.outbox.backlog())[0] == 0

    await _until(drained, "the whole session delivered")

    problems: list[str] = []
    sent: Counter[str] = Counter()
    for seen in proxy.log:
        path = unquote(seen.path)
        if seen.method == "POST" and path.endswith("/createRoom"):
            sent["createRoom"] += 1
            problems += create_room_problems(json.loads(seen.body))
        elif seen.method == "PUT" and (match := SEND.match(path)):
            kind = match[1]
            content = json.loads(seen.body)
            sent[f"{kind}:{content.get('msgtype', '')}"] += 1
            problems += event_problems(kind, content, where=f"{path} {seen.body[:120]!r}")
        elif seen.method == "PUT" and (match := STATE.match(path)):
            kind, key = match[1], match[2]
            sent[f"state {kind}"] += 1
            problems += event_problems(kind, json.loads(seen.body), key, where=path)
    assert problems == [], "\n".join(problems)
    # The checks saw the bridge's whole range, not a corner of it.
    assert sent["createRoom"] == 2  # the thread's room and its project's space
    for kind in (
        "m.room.message:m.notice",
        "m.room.message:m.text",
        "m.room.message:m.file",
        "m.reaction:",
        "state m.room.topic",
        "state m.room.name",
        "state org.claude_bridge.thread",
        "state m.space.child",
    ):
        assert sent[kind] > 0, (kind, sent)
