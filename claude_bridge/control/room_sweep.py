"""At start-up, every thread room and project space is brought in line with the room rules.

That migrates rooms made before the rules (viewers could invite, operators could open the room)
and applies changed levels in ``bridge.permissions``: a demoted user is lowered, a removed one
banned (``room_check`` says why not kicked). Rooms already checked against the same rules are
skipped (``room_policy.policy``), so a restart costs nothing when nothing changed. One room at a time, in the background: the
homeserver's rate limits are respected (``retry_after_ms``) and hooks flow meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial

from claude_bridge.control.room_check import Outcome, RoomCheck
from claude_bridge.control.room_guard import RoomGuard
from claude_bridge.log import get_logger
from claude_bridge.matrix.client import MatrixError
from claude_bridge.store import ThreadStore
from claude_bridge.store.room_policy import RoomPolicyStore
from claude_bridge.worker import Worker

log = get_logger("rooms")

TRIES = 6
BACKOFF = 1.0


class RoomSweep(Worker):
    name = "room-sweep"

    def __init__(
        self, check: RoomCheck, guard: RoomGuard, threads: ThreadStore, store: RoomPolicyStore
    ) -> None:
        super().__init__()
        self.check = check
        self.guard = guard
        self.threads = threads
        self.store = store
        self.counts: dict[str, int] = {}
        self.done = asyncio.Event()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.sweep()
            except Exception:
                log.exception("room check failed; trying again at the next start")
            self.done.set()

    async def sweep(self) -> dict[str, int]:
        counts = {"checked": 0, "changed": 0, "banned": 0, "unbanned": 0, "failed": 0}
        fingerprint = self.check.fingerprint
        for thread_id in await self.store.unchecked_threads(fingerprint):
            thread = await self.threads.get(thread_id)
            if thread is not None and thread.room_id:
                await self._one(thread.room_id, partial(self.check.thread_room, thread), counts)
        for room_id in await self.store.unchecked_spaces(fingerprint):
            await self._one(room_id, partial(self.check.space, room_id), counts)
        self.counts = counts
        if counts["checked"] or counts["failed"]:
            log.info("rooms checked against the room rules", **counts)
        return counts

    async def _one(
        self, room_id: str, check: Callable[[], Awaitable[Outcome]], counts: dict[str, int]
    ) -> None:
        delay = BACKOFF
        for attempt in range(1, TRIES + 1):
            try:
                outcome = await check()
                break
            except MatrixError as e:
                if e.temporary and attempt < TRIES:
                    await asyncio.sleep(max(delay, (e.retry_after_ms or 0) / 1000))
                    delay *= 2
                    continue
                # E.g. the ghost left an archived room: nothing the bridge can change there.
                log.warning("could not check a room", room_id=room_id, error=str(e))
                counts["failed"] += 1
                if not e.temporary:
                    await self.store.checked(room_id, self.check.fingerprint)
                return
        counts["checked"] += 1
        counts["changed"] += bool(outcome.changed)
        counts["banned"] += len(outcome.banned)
        counts["unbanned"] += len(outcome.unbanned)
        event = outcome.encryption
        if event is not None:
            await self.guard.encrypted_room(
                room_id, str(event.get("sender")), str(event.get("event_id"))
            )
