"""When events may have been lost: decided from memory, so the hot path costs nothing."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GapWindow:
    """Events may have been lost since ``since_ms``; the last stored event then had ``since_id``."""

    since_ms: int
    since_id: int


class GapWatch:
    """Decides, from memory only, whether an event may follow lost ones (see the module doc)."""

    MAX_WINDOWS = 1000

    def __init__(self) -> None:
        self.boot: GapWindow | None = None
        self._generation = 0
        self._windows: dict[int, GapWindow] = {}
        self._threads: dict[str, int] = {}
        self._stored_since_failure = True
        self.last_id = 0

    def window_for(self, thread_id: str) -> GapWindow | None:
        seen = self._threads.get(thread_id)
        if seen is None:
            return self.boot
        if seen < self._generation:
            # A forgotten window (a database flapping for long) falls back to the process start:
            # wider, which costs a longer look, never a duplicate.
            return self._windows.get(seen + 1) or self.boot or self._windows[min(self._windows)]
        return None

    def accepted(self, thread_id: str, hook_event_id: int) -> None:
        self._threads[thread_id] = self._generation
        self._stored_since_failure = True
        self.last_id = max(self.last_id, hook_event_id)

    def failed(self, now_ms: int) -> None:
        if not self._stored_since_failure:
            return  # the same outage: its window is open already
        self._stored_since_failure = False
        self._generation += 1
        self._windows[self._generation] = GapWindow(now_ms, self.last_id)
        if len(self._windows) > self.MAX_WINDOWS:
            del self._windows[min(self._windows)]
