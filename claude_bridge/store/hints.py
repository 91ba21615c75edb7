"""In-memory hints that let the hook path skip a query whose answer is almost always "none".

Every hook answer checks whether its thread has a pending stop request or queued Matrix messages.
Almost always it has neither, and asking the database costs a round trip each (a thread hop for
SQLite) on the path Claude Code waits on. The leader process is the only one that writes those
rows, so it can know which threads *may* have one: the ids are loaded once at start, every writer
adds its thread before it writes, and a query that finds nothing removes it again — unless a
write for that thread began meanwhile. A thread not in the set has no such row: no query needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class MaybeRows:
    """Thread ids that may have a row of one kind; before ``load`` every thread may."""

    def __init__(self) -> None:
        self.loaded = False
        self._ids: set[str] = set()
        # Writes begun and writes still running, over all threads: a query that overlapped any
        # write keeps its thread (cheap and safe; writes of these rows are rare).
        self._begun = 0
        self._running = 0

    def load(self, thread_ids: Iterable[str]) -> None:
        self._ids |= set(thread_ids)
        self.loaded = True

    def may_have(self, thread_id: str) -> bool:
        return not self.loaded or thread_id in self._ids

    @contextmanager
    def adding(self, thread_id: str) -> Iterator[None]:
        """Wrap a write that may create such a row for the thread."""
        self._ids.add(thread_id)
        self._begun += 1
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1

    def before_query(self) -> int:
        """Call before a query of a thread's rows; pass the result to ``found_none``."""
        return self._begun

    def found_none(self, thread_id: str, before: int) -> None:
        """The query found no such row: forget the thread, unless a write overlapped the query."""
        if self._running or self._begun != before:
            return
        self._ids.discard(thread_id)
