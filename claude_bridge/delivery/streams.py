"""The text of each streamed message so far (``MessageDisplay`` chunks), read incrementally.

Every chunk is rendered with its message's whole text so far, and a Stop with its turn's. Reading
all of a thread's chunks again for each one made a long stream quadratic (``bench/
stream_context.py``). So each thread's streams are kept as they were folded, with the id up to
which every chunk is in, and only the chunks after it are read. The fold is the same either way:
chunks in id order, the first delta of a (message, index) and the first prompt id of a message
win. Events of one thread are stored one at a time (``hooks/ingest.py``), so no chunk with a
lower id can appear once a higher one is read. Asked for an id below what is folded (an event
delivered again), the reader folds from the start, as before, and keeps nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Iterable

from claude_bridge.events.catalogue import MESSAGE_DISPLAY
from claude_bridge.store import HookEventLog

Streams = dict[str, tuple[str | None, str]]
"""Message id → (prompt id, text so far), in the order the messages began."""

KEEP_THREADS = 32
"""Threads whose streams are kept (the most recently asked); another is folded from the start."""


class _Folded:
    def __init__(self) -> None:
        self.through = 0
        self.chunks: dict[str, dict[int, str]] = {}
        self.prompts: dict[str, str | None] = {}
        self.texts: dict[str, str] = {}  # joined, for messages unchanged since
        self.lock = asyncio.Lock()

    def fold(self, payloads: Iterable[str]) -> None:
        for payload in payloads:
            data = json.loads(payload)
            mid, delta = data.get("message_id"), data.get("delta")
            if not isinstance(mid, str) or not isinstance(delta, str):
                continue
            self.prompts.setdefault(mid, data.get("prompt_id"))
            parts = self.chunks.setdefault(mid, {})
            index = int(data.get("index") or 0)
            if index not in parts:
                parts[index] = delta
                self.texts.pop(mid, None)

    def streams(self) -> Streams:
        for mid, parts in self.chunks.items():
            if mid not in self.texts:
                self.texts[mid] = "".join(parts[i] for i in sorted(parts))
        return {mid: (self.prompts[mid], self.texts[mid]) for mid in self.chunks}


class StreamReader:
    def __init__(self, log: HookEventLog) -> None:
        self.log = log
        self._threads: OrderedDict[str, _Folded] = OrderedDict()

    async def streams(self, thread_id: str, up_to: int) -> Streams:
        """The thread's streams as of hook event ``up_to`` (its chunks with ids up to it)."""
        folded = self._threads.get(thread_id)
        if folded is None:
            folded = self._threads[thread_id] = _Folded()
            while len(self._threads) > KEEP_THREADS:
                self._threads.popitem(last=False)
        self._threads.move_to_end(thread_id)
        async with folded.lock:
            if up_to < folded.through:
                again = _Folded()
                again.fold(await self._chunks(thread_id, 0, up_to))
                return again.streams()
            if up_to > folded.through:
                folded.fold(await self._chunks(thread_id, folded.through, up_to))
                folded.through = up_to
            return folded.streams()

    async def _chunks(self, thread_id: str, after: int, up_to: int) -> list[str]:
        return await self.log.payloads(thread_id, MESSAGE_DISPLAY.name, up_to, after)
