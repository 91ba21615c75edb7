"""A compaction in the room, read back through Synapse: one notice, edited as it goes.

The payloads are the ones recorded from Claude Code 2.1.332 (tests/fixtures/hook-payloads), in
the order it sends them: PreCompact, SessionStart(compact), PostCompact; then the older order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from claude_bridge.app import Bridge
from tests.e2e.conftest import HookPoster, Stack, hook_payload, new_session
from tests.e2e.test_foundation import _until, _wait_for_room

pytestmark = pytest.mark.e2e

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "hook-payloads"
SUMMARY = (
    "<analysis>\nThe user wants the parser fixed.\n</analysis>\n<summary>\n"
    + "\n".join(f"## {i}. Part\nThe **user** asked for part {i}." for i in range(1, 6))
    + "\n</summary>"
)


def recorded(name: str, session: str, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDED / name).read_text())
    return {**data, "session_id": session, **fields}


def relation(event: dict[str, Any]) -> tuple[str | None, str | None]:
    rel = event["content"].get("m.relates_to") or {}
    return rel.get("rel_type"), rel.get("event_id")


async def test_one_compaction_is_one_notice_and_its_summary_in_the_thread(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session = new_session()
    for payload in [
        hook_payload("SessionStart", session),
        recorded("PreCompact.json", session),
        recorded("SessionStart.compact.json", session),
        recorded("PostCompact.json", session, compact_summary=SUMMARY),
        # A second compaction in the older order: its own notice, the SessionStart adds nothing.
        recorded("PreCompact.json", session, trigger="auto"),
        recorded("PostCompact.json", session, trigger="auto"),
        recorded("SessionStart.compact.json", session),
    ]:
        status, body = await hooks.post(payload)
        assert status == 200, body
    room_id = await _wait_for_room(bridge, session.lower())

    async def drained() -> bool:
        return (await bridge.outbox.backlog())[0] == 0

    await _until(drained, "the compactions delivered")
    alice = stack.users["alice"]
    await alice.wait_for_invite(room_id)
    await alice.join(room_id)
    messages = [e for e in await alice.messages(room_id) if e["type"] == "m.room.message"]
    notices = [e for e in messages if "🗜️" in e["content"]["body"] and not relation(e)[0]]
    assert [e["content"]["body"] for e in notices] == [
        "🗜️ Compacting the conversation (manual)…",
        "🗜️ Compacting the conversation (automatic)…",
    ]
    first, second = notices

    def edits(of: dict[str, Any]) -> list[str]:
        found = [e for e in messages if relation(e) == ("m.replace", of["event_id"])]
        found.sort(key=lambda e: e["origin_server_ts"])
        return [e["content"]["m.new_content"]["body"] for e in found]

    # 2.1.332's order: the SessionStart says it is done, the PostCompact adds the summary.
    assert edits(first) == [
        "🗜️ Conversation compacted (manual)",
        "🗜️ Conversation compacted (manual) — summary in the thread (10 lines)",
    ]
    (summary,) = [e for e in messages if relation(e) == ("m.thread", first["event_id"])]
    body, html = summary["content"]["body"], summary["content"]["formatted_body"]
    assert body.startswith("🗜️ Summary\n1. Part\n\nThe user asked for part 1.")
    assert "<p><strong>5. Part</strong></p>" in html
    for text in (body, html):
        assert "summary>" not in text and "analysis" not in text and "**" not in text
    # The older order: the PostCompact's edit is the last word, the SessionStart adds nothing.
    (short,) = edits(second)
    assert short.startswith("🗜️ Conversation compacted (automatic)\nPrimary request")
    assert "summary>" not in short
    session_notes = [e for e in messages if "Session continues" in e["content"]["body"]]
    assert session_notes == []
