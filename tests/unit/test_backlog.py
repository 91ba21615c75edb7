"""The backlog cap on real SQLite and Postgres: what is folded, what is kept, and one notice per
stretch of being behind (edited as more is folded). The room side: tests/e2e/security."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from claude_bridge.delivery.backlog import ALWAYS_SENT, BacklogCap, plan_fold
from claude_bridge.ids import HookEventID, SessionID, ThreadID
from claude_bridge.store import Outbox, Thread, ThreadStore, create_database
from claude_bridge.store.outbox import Waiting

THREAD = ThreadID("burst")
BATCH = 100


def waiting(*names: str) -> list[Waiting]:
    return [Waiting(HookEventID(i + 1), name, False) for i, name in enumerate(names)]


def test_the_newest_are_kept_with_the_outputs_of_their_calls_and_what_people_must_see() -> None:
    names = ["UserPromptSubmit", "PreToolUse", "PreToolUse", "Notification"]
    names += ["PostToolUse", "PostToolUse", "InstructionsLoaded", "PreToolUse", "Stop"]
    plan = plan_fold(waiting(*names), keep=4)
    assert plan is not None
    # The stretch ends before the last 4, plus the outputs right after it (ids 5 and 6).
    assert (plan.carrier, plan.last) == (2, 6)
    assert plan.kinds == {"PreToolUse": 2, "PostToolUse": 2}
    assert plan_fold(waiting(*names), keep=9) is None  # under the cap: nothing
    assert plan_fold(waiting("Stop", "UserPromptSubmit", "Stop"), keep=0) is None
    assert {"UserPromptSubmit", "Stop", "PermissionRequest", "Notification"} <= ALWAYS_SENT
    # An event carrying a notice already is not folded again.
    carried = [Waiting(HookEventID(1), "PreToolUse", True), *waiting("x", "y")[1:]]
    plan = plan_fold(carried, keep=0)
    assert plan is not None and plan.carrier == 2


@pytest.fixture
async def outbox(store_url: str) -> AsyncIterator[Outbox]:
    db = create_database(store_url)
    await db.start()
    thread = Thread(THREAD, SessionID("burst"), "@claude-burst:x", "#claude-thread-burst:x")
    await ThreadStore(db).ensure(thread)
    yield Outbox(db)
    await db.stop()


async def queue(outbox: Outbox, *names: str) -> list[HookEventID]:
    return [await outbox.append(THREAD, name, "{}", "laptop") for name in names]


async def states(outbox: Outbox) -> dict[str, int]:
    rows = await outbox.db.fetch(
        "SELECT state, COUNT(*) AS n FROM hook_event WHERE thread_id=$1 GROUP BY state", THREAD
    )
    return {r["state"]: int(r["n"]) for r in rows}


async def test_a_backlog_over_the_cap_folds_once_and_its_notice_is_edited_while_behind(
    outbox: Outbox,
) -> None:
    cap = BacklogCap(outbox, 40)
    prompt = await queue(outbox, "UserPromptSubmit")
    calls = await queue(outbox, *["PreToolUse", "PostToolUse"] * 50)
    reply = await queue(outbox, "Stop")
    batch = await outbox.pending(THREAD, BATCH)

    batch = await cap.check(THREAD, batch, BATCH)

    # 102 waiting, cap 40: all but the newest 20 are folded (and the output among those whose
    # call is folded); the prompt stays first, the first folded event carries the notice, the
    # reply keeps its place.
    assert [e.id for e in batch[:2]] == [prompt[0], calls[0]]
    assert batch[1].folded is not None and batch[0].folded is None
    assert [e.id for e in batch[2:]] == calls[-18:] + reply
    assert await states(outbox) == {"pending": 21, "folded": 81}
    [notice] = cap.notice(batch[1])
    assert notice.replaces is None and notice.anchor == f"fold:{calls[0]}"
    assert notice.content["body"].startswith("⏩ Catching up: 82 events folded")
    assert "(41 tool calls, 41 outputs)" in notice.content["body"]
    # Under the cap nothing happens, and the database is not even asked.
    assert await cap.check(THREAD, batch[:3], BATCH) == batch[:3]

    # The notice is in the room; the thread falls behind again before it caught up: the new
    # carrier edits that notice with the totals so far.
    cap.sent(batch[1])
    for event in batch:
        await outbox.mark_sent(event.id)
    more = await queue(outbox, *["PreToolUse", "PostToolUse"] * 30)
    again = await cap.check(THREAD, await outbox.pending(THREAD, BATCH), BATCH)
    assert again[0].id == more[0] and again[0].folded is not None
    [edit] = cap.notice(again[0])
    assert edit.replaces == f"fold:{calls[0]}" and edit.anchor is None
    assert edit.content["body"].startswith("⏩ Catching up: 122 events folded")

    # Once it caught up, a later backlog gets a notice of its own.
    cap.sent(again[0])
    for event in again:
        await outbox.mark_sent(event.id)
    cap.caught_up(THREAD)
    latest = await queue(outbox, *["PreToolUse"] * 41)
    third = await cap.check(THREAD, await outbox.pending(THREAD, BATCH), BATCH)
    [fresh] = cap.notice(third[0])
    assert third[0].id == latest[0] and fresh.replaces is None
    assert fresh.content["body"].startswith("⏩ Catching up: 21 events folded (21 tool calls)")
