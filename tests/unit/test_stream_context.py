"""The text of streamed messages as delivery reads it (``ContextReader.streams``,
``delivery/streams.py``), on both stores.

The reader keeps each thread's streams and reads only the chunks after what it has folded. What
it answers must be what folding every chunk up to the event again answers (the reference below,
the reader as it was): a random thread history of chunks out of order, repeated indexes, a
message's prompt changing, malformed chunks and other events between them, asked for in order,
again for earlier events (a redelivery), across more threads than it keeps. And each chunk is
read once, not once per later chunk.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from mautrix.util.async_db import Database

from claude_bridge.delivery import streams as streams_module
from claude_bridge.delivery.context import ContextReader
from claude_bridge.store import HookEventLog, Outbox, Thread, ThreadStore, create_database


@pytest.fixture
async def db(store_url: str) -> AsyncIterator[Database]:
    database = create_database(store_url)
    await database.start()
    yield database
    await database.stop()


def reference(payloads: list[str]) -> dict[str, tuple[str | None, str]]:
    """Every MessageDisplay payload folded from the start: how the reader answered before."""
    chunks: dict[str, dict[int, str]] = {}
    prompts: dict[str, str | None] = {}
    for payload in payloads:
        data = json.loads(payload)
        mid, delta = data.get("message_id"), data.get("delta")
        if not isinstance(mid, str) or not isinstance(delta, str):
            continue
        prompts.setdefault(mid, data.get("prompt_id"))
        chunks.setdefault(mid, {}).setdefault(int(data.get("index") or 0), delta)
    return {mid: (prompts[mid], "".join(p[i] for i in sorted(p))) for mid, p in chunks.items()}


def random_event(rng: random.Random, n: int) -> tuple[str, dict[str, Any]]:
    roll = rng.random()
    if roll < 0.15:
        return "PreToolUse", {"tool_name": "Bash", "message_id": "m0", "delta": "not a chunk"}
    chunk: dict[str, Any] = {
        "message_id": f"m{rng.randrange(4)}",
        "prompt_id": rng.choice(["p1", "p2", None]),
        "index": rng.choice([rng.randrange(6), None, 0]),
        "delta": f"[{n}]",
    }
    if roll < 0.2:
        del chunk["delta"]  # malformed: skipped, as before
    elif roll < 0.25:
        chunk["message_id"] = 7
    return "MessageDisplay", chunk


async def test_the_reader_answers_what_folding_every_chunk_again_answers(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streams_module, "KEEP_THREADS", 2)  # three threads: one is evicted
    rng = random.Random(7)
    outbox, threads = Outbox(db, group_commit=False), ThreadStore(db)
    reader = ContextReader(HookEventLog(db), cast(Any, None), None)
    stored: dict[str, list[tuple[int, str, str]]] = {}
    for t in ("t1", "t2", "t3"):
        await threads.ensure(Thread(t, t.upper(), f"@claude-{t}:hs", f"#claude-thread-{t}:hs"))
        stored[t] = []
    for n in range(240):
        thread_id = rng.choice(list(stored))
        name, data = random_event(rng, n)
        payload = json.dumps({"hook_event_name": name, "session_id": thread_id.upper(), **data})
        event_id = await outbox.append(thread_id, name, payload, "desk")
        stored[thread_id].append((event_id, name, payload))
        # Ask as delivery does: for this event, and now and then for an earlier one again.
        asks = [event_id]
        if rng.random() < 0.1:
            asks.append(rng.choice(stored[thread_id])[0])
        for up_to in asks:
            expected = reference(
                [p for i, kind, p in stored[thread_id] if kind == "MessageDisplay" and i <= up_to]
            )
            got = await reader.streams(thread_id, up_to)
            assert got == expected, (thread_id, up_to)
            assert list(got) == list(expected)  # messages in the order they began
    await outbox.close()


async def test_each_chunk_is_read_once_not_once_per_later_chunk(db: Database) -> None:
    await ThreadStore(db).ensure(Thread("t1", "T1", "@claude-t1:hs", "#claude-thread-t1:hs"))
    outbox, log = Outbox(db, group_commit=False), HookEventLog(db)
    read: list[int] = []
    payloads = log.payloads

    async def counting(*args: Any) -> list[str]:
        found = await payloads(*args)
        read.append(len(found))
        return found

    log.payloads = counting  # type: ignore[method-assign]
    reader = ContextReader(log, cast(Any, None), None)
    for i in range(50):
        payload = {"message_id": "m1", "prompt_id": "p1", "index": i, "delta": f"{i} "}
        event_id = await outbox.append("t1", "MessageDisplay", json.dumps(payload), "desk")
        _, text = (await reader.streams("t1", event_id))["m1"]
        assert text == "".join(f"{n} " for n in range(i + 1))
        assert (await reader.streams("t1", event_id))["m1"][1] == text  # asked again: no read
    assert sum(read) == 50 and len(read) == 50
    await outbox.close()
