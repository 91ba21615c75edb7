"""The read model behind the threads API: filters, and a merged timeline paged without gaps."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from mautrix.util.async_db import Database

from claude_bridge.history import ThreadFilter, ThreadHistory, decode_cursor, describe_hook_event
from claude_bridge.store import (
    MatrixEventStore,
    Outbox,
    SentEvents,
    Thread,
    ThreadStore,
    create_database,
)


@pytest.fixture
async def db(store_url: str) -> AsyncIterator[Database]:
    database = create_database(store_url)
    await database.start()
    yield database
    await database.stop()


async def _thread(db: Database, n: str, project: str, status: str = "active") -> Thread:
    thread = await ThreadStore(db).ensure(
        Thread(
            n,
            n.upper(),
            f"@claude-{n}:hs",
            f"#claude-thread-{n}:hs",
            project_path=f"/src/{project}",
            project_name=project,
            title=f"work on {project}",
        )
    )
    await ThreadStore(db).set_room(n, f"!{n}:hs")
    await ThreadStore(db).set_status(n, status)
    thread.room_id = f"!{n}:hs"
    return thread


async def test_filters_by_project_status_and_text(db: Database) -> None:
    await _thread(db, "a1", "parser")
    await _thread(db, "b2", "web_app", status="ended")
    await _thread(db, "c3", "web-app")
    history = ThreadHistory(db)

    async def ids(**kw: object) -> list[str]:
        return sorted(t.id for t in await history.list_threads(ThreadFilter(**kw)))  # type: ignore[arg-type]

    assert await ids() == ["a1", "b2", "c3"]
    assert await ids(project="WEB") == ["b2", "c3"]
    assert await ids(project="web_app") == ["b2"]  # '_' is a letter here, not a LIKE wildcard
    assert await ids(project="%") == []
    assert await ids(status="ended") == ["b2"]
    assert await ids(text="work on par") == ["a1"]
    assert await ids(text="C3") == ["c3"]  # the session id
    assert await ids(project="web", status="active") == ["c3"]
    assert len(await history.list_threads(ThreadFilter(limit=2))) == 2
    assert len(await history.list_threads(ThreadFilter(limit=2, offset=2))) == 1


async def test_messages_merge_both_sides_and_page_without_gaps(db: Database) -> None:
    thread = await _thread(db, "t1", "demo")
    outbox, matrix_events = Outbox(db), MatrixEventStore(db)
    expected = []
    # Hook events and Matrix events interleaved, several at the same millisecond.
    for i in range(7):
        hook = await outbox.append("t1", "UserPromptSubmit", f'{{"prompt": "p{i}"}}', "laptop")
        await db.execute("UPDATE hook_event SET received_at=$1 WHERE id=$2", 1000 + i // 2, hook)
        expected.append(f"p{i}")
        if i % 3 == 0:
            await matrix_events.store_transaction(
                f"txn{i}",
                [
                    {
                        "event_id": f"$m{i}",
                        "room_id": "!t1:hs",
                        "sender": "@alice:hs",
                        "type": "m.room.message",
                        "content": {"body": f"m{i}"},
                    }
                ],
            )
            await db.execute(
                "UPDATE matrix_event SET received_at=$1 WHERE event_id=$2", 1000 + i // 2, f"$m{i}"
            )
            expected.append(f"m{i}")
    # Streamed chunks and the ghost's own Matrix echo are not separate messages.
    chunk = await outbox.append("t1", "MessageDisplay", '{"delta": "x"}', "laptop")
    await SentEvents(db).record_part(chunk, 0, "t1", None, "$echo")
    await matrix_events.store_transaction(
        "txn-echo",
        [
            {
                "event_id": "$echo",
                "room_id": "!t1:hs",
                "sender": "@claude-t1:hs",
                "type": "m.room.message",
                "content": {"body": "x"},
            }
        ],
    )

    history = ThreadHistory(db)
    everything, before = await history.messages(thread, limit=100)
    assert before is None
    # At equal times, hook events come before Matrix events: the total order pages rely on.
    order = sorted(everything, key=lambda m: (m.ts, m.role == "matrix"))
    assert [m.text for m in everything] == [m.text for m in order]
    assert sorted(m.text for m in everything) == sorted(expected)

    pages, cursor = [], None
    while True:
        page, cursor = await history.messages(thread, limit=2, before=cursor)
        pages.insert(0, page)
        assert len(page) == 2 or cursor is None
        if cursor is None:
            break
        decode_cursor(cursor)
    assert [m.text for page in pages for m in page] == [m.text for m in everything]
    alice = next(m for m in everything if m.text == "m0")
    assert (
        alice.role == "matrix" and alice.sender == "@alice:hs" and alice.matrix_event_ids == ["$m0"]
    )
    with pytest.raises(ValueError, match="not a cursor"):
        await history.messages(thread, before="garbage")


@pytest.mark.parametrize(
    ("name", "payload", "want"),
    [
        ("UserPromptSubmit", '{"prompt": "hi"}', ("user", "hi")),
        ("Stop", '{"last_assistant_message": "done"}', ("assistant", "done")),
        (
            "PreToolUse",
            '{"tool_name": "Bash", "tool_input": {"command": "ls"}}',
            ("tool", "Bash ls"),
        ),
        (
            "PermissionRequest",
            '{"tool_name": "Edit", "tool_input": {"file_path": "a.py"}}',
            ("tool", "asks to use Edit a.py"),
        ),
        ("Notification", '{"message": "Claude needs you"}', ("system", "Claude needs you")),
        ("SessionEnd", '{"reason": "logout"}', ("system", "session ended (logout)")),
        ("Stop", '{"pruned":true}', ("system", "Stop (payload pruned by retention)")),
        ("Whatever", "not json", ("system", "Whatever")),
    ],
)
def test_hook_events_read_as_lines(name: str, payload: str, want: tuple[str, str]) -> None:
    assert describe_hook_event(name, payload) == want
