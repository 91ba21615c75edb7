"""Today's hook path beside the new one, in the same run: the bridge restarted between them.

On Postgres the acknowledgement benchmarks run each repeat twice, with group commit on (the
default, ``hooks.group_commit``) and off (one commit per event, the path before it). The order
alternates (on, off, off, on, on, off …) so each restart switches once and both see the same
machine. SQLite has nothing to switch (the option does not apply there): one mode.
"""

from __future__ import annotations

from collections.abc import Iterator

from bench.mirroring import LiveSession, close_sessions, post_ok
from bench.stack import Stack

GROUP, SINGLE = "group", "single"
ENV = {GROUP: {}, SINGLE: {"CLAUDE_BRIDGE__HOOKS__GROUP_COMMIT": "false"}}
LABEL = {GROUP: "", SINGLE: "group commit off (one commit per event, as before)"}


class Modes:
    def __init__(self, stack: Stack, postgres: bool) -> None:
        self.stack = stack
        self.all = [GROUP, SINGLE] if postgres else [GROUP]
        self.current = GROUP
        self.restarts = 0
        self.tracked: list[LiveSession] = []
        """Sessions kept across benchmarks: reconnected after every restart."""

    def order(self, repeats: int) -> Iterator[tuple[int, str]]:
        """(repeat, mode) pairs: each repeat starts in the mode the bridge is already in."""
        for repeat in range(repeats):
            first = self.current
            for mode in [first, *(m for m in self.all if m != first)]:
                yield repeat, mode

    async def use(self, mode: str, sessions: list[LiveSession], timeout: float) -> None:
        """Run the bridge in ``mode``; after a restart, reconnect ``sessions`` and let each post
        a pair once (a fresh process learns its threads at their first event)."""
        if mode == self.current:
            return
        await self.stack.restart_bridge(ENV[mode])
        self.current = mode
        self.restarts += 1
        # Their connections died with the bridge: each reconnects at its next post.
        await close_sessions([*sessions, *self.tracked])
        for live in sessions:
            for body, _ in live.session.pair():
                await post_ok(live.conn, body)
        await self.stack.drain(timeout)

    async def restore(self, timeout: float) -> None:
        """Back to the default before the next benchmark."""
        await self.use(GROUP, [], timeout)


def row_id(base: str, mode: str) -> str:
    return base if mode == GROUP else f"{base}.{mode}"


def case(text: str, mode: str) -> str:
    return text if mode == GROUP else f"{text}; {LABEL[mode]}"
