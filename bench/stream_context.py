"""The render context of streamed text, chunk by chunk: ``python -m bench.stream_context``.

Each ``MessageDisplay`` chunk is rendered with its message's text so far
(``ContextReader.streams``, ``delivery/context.py``). This stores ``N`` chunks of one thread (a
flood of streamed text) and asks for the context of each in order, as delivery does, timing each
ask: flat per chunk when only the new chunks are read, growing with ``N`` when every earlier one
is read again. No homeserver: the store and the reader only.

    python -m bench.stream_context [--postgres] [--chunks 500,1000,2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from claude_bridge.delivery.context import ContextReader
from claude_bridge.ids import SessionID, ThreadID
from claude_bridge.store import HookEventLog, Outbox, Thread, ThreadStore, create_database
from tests.conftest import create_pg_database, drop_pg_database


async def run(url: str, n: int) -> dict[str, float]:
    db = create_database(url)
    await db.start()
    try:
        await ThreadStore(db).ensure(
            Thread(ThreadID("t1"), SessionID("S1"), "@claude-t1:hs", "#claude-thread-t1:hs")
        )
        outbox = Outbox(db, group_commit=False)
        ids = []
        for i in range(n):
            payload = {
                "hook_event_name": "MessageDisplay",
                "session_id": "S1",
                "message_id": f"m{i // 50}",  # a message every 50 chunks
                "prompt_id": "p1",
                "index": i % 50,
                "delta": f"word{i} " * 8,
            }
            ids.append(await outbox.append("t1", "MessageDisplay", json.dumps(payload), "bench"))
        await outbox.close()
        reader = ContextReader(HookEventLog(db), cast(Any, None), None)
        times = []
        for event_id in ids:
            start = time.perf_counter()
            await reader.streams("t1", event_id)
            times.append(time.perf_counter() - start)
        return {
            "chunks": n,
            "total_s": sum(times),
            "first_100_ms_each": sum(times[:100]) / min(100, n) * 1000,
            "last_100_ms_each": sum(times[-100:]) / min(100, n) * 1000,
        }
    finally:
        await db.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--chunks", default="500,1000,2000")
    args = parser.parse_args()
    for n in (int(x) for x in args.chunks.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            if args.postgres:  # a fresh database on the shared server, dropped afterwards
                url = await create_pg_database()
                try:
                    result = await run(url, n)
                finally:
                    await drop_pg_database(url)
            else:
                result = await run(f"sqlite:{Path(tmp) / 'bench.db'}", n)
        print(json.dumps({k: round(v, 4) for k, v in result.items()}))


if __name__ == "__main__":
    asyncio.run(main())
