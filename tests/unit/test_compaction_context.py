"""Which compaction notice a PostCompact or SessionStart(compact) edits, read from the store.

The renderer side is tests/unit/render/test_render_compaction.py; this is delivery's half: the
thread's events as stored, in both orders Claude Code has sent them, on both stores.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from mautrix.util.async_db import Database

from claude_bridge.delivery.context import ContextReader
from claude_bridge.events.parse import parse_hook_event
from claude_bridge.store import HookEventLog, Outbox, Thread, ThreadStore, create_database


@pytest.fixture
async def db(store_url: str) -> AsyncIterator[Database]:
    database = create_database(store_url)
    await database.start()
    await ThreadStore(database).ensure(Thread("t1", "S1", "@claude-t1:hs", "#claude-thread-t1:hs"))
    yield database
    await database.stop()


async def _events(db: Database, *events: dict[str, Any]) -> list[int]:
    outbox = Outbox(db)
    payloads = [{"session_id": "S1", **e} for e in events]
    return [
        await outbox.append("t1", p["hook_event_name"], json.dumps(p), "desk") for p in payloads
    ]


async def _compaction(db: Database, event_id: int, data: dict[str, Any]) -> dict[str, Any] | None:
    reader = ContextReader(HookEventLog(db), cast(Any, None), None)
    hook = parse_hook_event({"session_id": "S1", **data})
    return await reader.compaction("t1", hook, event_id)


PRE = {"hook_event_name": "PreCompact", "trigger": "auto", "custom_instructions": "keep tests"}
START = {"hook_event_name": "SessionStart", "source": "compact"}
POST = {"hook_event_name": "PostCompact", "trigger": "auto", "compact_summary": "S"}


async def test_new_order_both_edit_the_pre_compact_notice(db: Database) -> None:
    """2.1.332: PreCompact, SessionStart(compact), PostCompact."""
    _, pre, start, post = await _events(db, {"hook_event_name": "Stop"}, PRE, START, POST)
    pending = {"pre_compact": pre, "trigger": "auto", "instructions": "keep tests", "done": False}
    assert await _compaction(db, start, START) == pending
    assert await _compaction(db, post, POST) == pending


async def test_old_order_session_start_comes_after_the_outcome(db: Database) -> None:
    """2.1.197: PreCompact, PostCompact, SessionStart(compact)."""
    pre, post, start = await _events(db, PRE, POST, START)
    assert (await _compaction(db, post, POST) or {}).get("pre_compact") == pre
    assert await _compaction(db, start, START) == {"done": True}


async def test_each_compaction_has_its_own_notice(db: Database) -> None:
    first, _, _, second, post = await _events(db, PRE, START, POST, PRE, POST)
    found = await _compaction(db, post, POST)
    assert found is not None and found["pre_compact"] == second != first


async def test_without_a_pre_compact_there_is_no_notice_to_edit(db: Database) -> None:
    (post,) = await _events(db, POST)
    assert await _compaction(db, post, POST) is None
    _, _, post = await _events(db, PRE, POST, POST)  # a second PostCompact has none either
    assert await _compaction(db, post, POST) is None
