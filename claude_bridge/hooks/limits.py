"""How many new sessions (threads) one hook token may open: ``hooks.new_threads_per_minute``.

A runaway script or a leaked token posting thousands of session ids would otherwise make as many
rooms and ghosts. Events of existing threads are never limited, and the shim spools what is
refused (429 is temporary to it), so a legitimate burst is only delayed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class NewThreadLimit(Exception):
    def __init__(self, token_name: str | None, limit: int, retry_after: float) -> None:
        super().__init__(
            f"hook token {token_name!r} opened more than {limit} new sessions in a minute; "
            f"retry in {math.ceil(retry_after)} s (events of existing sessions are accepted)"
        )
        self.retry_after = retry_after


class TokenBuckets:
    """``per_minute`` new threads per token, refilled continuously; a burst of that size."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._buckets: dict[str | None, tuple[float, float]] = {}

    def take(self, token_name: str | None) -> float:
        """0 if allowed (and counted), else the seconds until it would be."""
        if self.per_minute <= 0:
            return 0.0
        now = self.clock()
        level, since = self._buckets.get(token_name, (float(self.per_minute), now))
        level = min(float(self.per_minute), level + (now - since) * self.per_minute / 60)
        if level < 1:
            self._buckets[token_name] = (level, now)
            return (1 - level) * 60 / self.per_minute
        self._buckets[token_name] = (level - 1, now)
        return 0.0
