"""Per-token caps (``hooks.tokens.<name>``): a leaked or runaway token must not exhaust the bridge.

- ``max_held_approvals``: permission requests held open at once, each a connection waiting for a
  person. A slot is taken before the event is stored and given back when its answer is sent, so a
  request over the cap is refused whole (429 with Retry-After; the shim spools it) rather than
  stored and then not held.
- ``max_threads``: threads the token owns in total. A new session beyond it is refused (403: waiting
  does not help; the operator raises the cap). Sessions being opened right now count too, so a
  burst of new sessions cannot slip past the count.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable

from claude_bridge.ids import ThreadID


class HeldLimit(Exception):
    RETRY_AFTER = 10

    def __init__(self, token_name: str | None, limit: int) -> None:
        super().__init__(
            f"hook token {token_name!r} holds {limit} permission requests open already "
            "(hooks.tokens.<name>.max_held_approvals); retry once an operator has answered one"
        )


class ThreadCapReached(Exception):
    def __init__(self, token_name: str | None, limit: int) -> None:
        super().__init__(
            f"hook token {token_name!r} owns {limit} threads, its hooks.tokens.<name>.max_threads: "
            "no new session is accepted (events of its existing sessions are)"
        )


class HeldApprovals:
    def __init__(self, limit_of: Callable[[str | None], int]) -> None:
        self.limit_of = limit_of
        self._held: dict[str | None, int] = {}

    def take(self, token_name: str | None) -> None:
        limit = self.limit_of(token_name)
        held = self._held.get(token_name, 0)
        if limit and held >= limit:
            raise HeldLimit(token_name, limit)
        self._held[token_name] = held + 1

    def give_back(self, token_name: str | None) -> None:
        left = self._held.get(token_name, 0) - 1
        if left > 0:
            self._held[token_name] = left
        else:
            self._held.pop(token_name, None)

    def held(self, token_name: str | None) -> int:
        return self._held.get(token_name, 0)


class ThreadCaps:
    def __init__(
        self,
        limit_of: Callable[[str | None], int],
        count_owned: Callable[[str], Awaitable[int]],
    ) -> None:
        self.limit_of = limit_of
        self.count_owned = count_owned
        self._opening: dict[str, set[ThreadID]] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def open(self, token_name: str | None, thread_id: ThreadID) -> None:
        """Count a new thread against its token's cap until ``opened`` says it is stored."""
        limit = self.limit_of(token_name)
        if not limit or token_name is None:
            return
        async with self._locks[token_name]:  # one count at a time per token: no double pass
            opening = self._opening.setdefault(token_name, set())
            if len(opening - {thread_id}) + await self.count_owned(token_name) >= limit:
                if not opening:
                    del self._opening[token_name]
                raise ThreadCapReached(token_name, limit)
            opening.add(thread_id)

    def opened(self, token_name: str | None, thread_id: ThreadID) -> None:
        """Stored, or failed: from now on the store's count has it, or it never was."""
        if token_name is None or token_name not in self._opening:
            return
        opening = self._opening[token_name]
        opening.discard(thread_id)
        if not opening:
            del self._opening[token_name]
