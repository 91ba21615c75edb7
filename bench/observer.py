"""A syncing Matrix user that timestamps what reaches the rooms: the benchmarks' finish line.

One long-polling ``/sync`` loop (as a real client runs). Every timeline event's body is searched
for benchmark markers, and the first time each marker is seen is recorded; invites are recorded
by the room's canonical alias. Times are ``time.perf_counter()`` taken when the sync answer
arrives, so "readable in the room by a syncing user" is what is measured, for the bridge and for
the raw ceiling alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from bench.payloads import MARKER
from tests.matrix_client import MatrixTestClient

_FILTER = json.dumps(
    {
        "presence": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
        "room": {
            "timeline": {"limit": 1000},
            "state": {"lazy_load_members": True},
            "ephemeral": {"not_types": ["*"]},
            "account_data": {"not_types": ["*"]},
        },
    },
    separators=(",", ":"),
)


class Observer:
    def __init__(self, client: MatrixTestClient) -> None:
        self.client = client
        self.markers: dict[str, float] = {}
        self.marker_rooms: dict[str, str] = {}
        self.invites: dict[str, tuple[str, float]] = {}  # alias localpart -> (room id, time)
        self.events_per_room: dict[str, int] = {}
        self.limited = 0
        self.syncs = 0
        self._waiters: dict[str, list[asyncio.Future[float]]] = {}
        self._invite_waiters: dict[str, list[asyncio.Future[tuple[str, float]]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._since: str | None = None
        self.error: BaseException | None = None

    async def start(self) -> None:
        # Skip history: the first sync only sets the starting point.
        data = await self.client.request(
            "GET", "/_matrix/client/v3/sync", params={"timeout": "0", "filter": _FILTER}
        )
        self._since = data["next_batch"]
        self._task = asyncio.create_task(self._loop(), name="observer")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                data = await self.client.request(
                    "GET",
                    "/_matrix/client/v3/sync",
                    params={"timeout": "30000", "filter": _FILTER, "since": self._since or ""},
                    http_timeout=60,
                )
            except asyncio.CancelledError:
                raise
            except Exception as e:  # keep observing; a benchmark waiting will time out
                self.error = e
                await asyncio.sleep(0.2)
                continue
            now = time.perf_counter()
            self.syncs += 1
            self._since = data["next_batch"]
            self._digest(data, now)

    def _digest(self, data: dict[str, Any], now: float) -> None:
        rooms = data.get("rooms", {})
        for room_id, room in rooms.get("join", {}).items():
            timeline = room.get("timeline", {})
            if timeline.get("limited"):
                self.limited += 1
            for event in timeline.get("events", []):
                self.events_per_room[room_id] = self.events_per_room.get(room_id, 0) + 1
                content = event.get("content") or {}
                body = content.get("body")
                if not isinstance(body, str):
                    continue
                for mark in MARKER.findall(body):
                    if mark not in self.markers:
                        self.markers[mark] = now
                        self.marker_rooms[mark] = room_id
                        for fut in self._waiters.pop(mark, []):
                            if not fut.done():
                                fut.set_result(now)
        for room_id, room in rooms.get("invite", {}).items():
            for event in room.get("invite_state", {}).get("events", []):
                if event.get("type") == "m.room.canonical_alias":
                    alias = (event.get("content") or {}).get("alias") or ""
                    local = alias[1:].split(":", 1)[0]
                    if local and local not in self.invites:
                        self.invites[local] = (room_id, now)
                        for waiter in self._invite_waiters.pop(local, []):
                            if not waiter.done():
                                waiter.set_result((room_id, now))

    async def wait_marker(self, mark: str, timeout: float) -> float:
        if mark in self.markers:
            return self.markers[mark]
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(mark, []).append(fut)
        async with asyncio.timeout(timeout):
            return await fut

    async def wait_invite(self, alias_localpart: str, timeout: float) -> tuple[str, float]:
        if alias_localpart in self.invites:
            return self.invites[alias_localpart]
        fut: asyncio.Future[tuple[str, float]] = asyncio.get_running_loop().create_future()
        self._invite_waiters.setdefault(alias_localpart, []).append(fut)
        async with asyncio.timeout(timeout):
            return await fut

    def count(self, marks: list[str]) -> int:
        return sum(1 for m in marks if m in self.markers)
