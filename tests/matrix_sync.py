"""Waiting for what the bridge posts, without sleeping: ``/sync`` long-polls for a test user.

``wait_for`` long-polls ``/sync`` until a matching event arrives or a deadline passes, and it
also looks through every event earlier syncs already delivered. Gaps in a limited timeline are
back-filled, so no event is missed in a burst.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp

from tests.matrix_http import JsonDict, MatrixHttp, MatrixRequestError, q

EventPredicate = Callable[[JsonDict], Any]

# Large timelines, so a burst of bridge messages between two syncs rarely produces a gap
# (gaps are back-filled anyway); presence and account data are just noise for tests.
_SYNC_FILTER = json.dumps(
    {
        "presence": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
        "room": {
            "timeline": {"limit": 500},
            "state": {"lazy_load_members": True},
            "ephemeral": {"not_types": ["*"]},
            "account_data": {"not_types": ["*"]},
        },
    },
    separators=(",", ":"),
)
_MAX_BACKFILL_PAGES = 20
_RETRY_AFTER_CONNECTION_ERROR = 0.25


def _matches(predicate: EventPredicate, event: JsonDict) -> bool:
    # Predicates may index freely (``e["content"]["body"]``); an event of another shape
    # simply does not match.
    try:
        return bool(predicate(event))
    except (KeyError, TypeError, AttributeError, IndexError):
        return False


def _summary(event: JsonDict) -> str:
    body = event.get("content", {}).get("body")
    return f"{event.get('type')} from {event.get('sender')}" + (f": {body!r}" if body else "")


class MatrixSync(MatrixHttp):
    """A user's view of their rooms as ``/sync`` delivers it: the timeline events so far, pending
    invites, and waiting for the next matching event."""

    def __init__(
        self,
        base_url: str,
        user_id: str,
        access_token: str,
        *,
        appservice: bool = False,
        sync_timeout: float = 5.0,
    ) -> None:
        super().__init__(base_url, user_id, access_token, appservice=appservice)
        self.sync_timeout = sync_timeout
        self.next_batch: str | None = None
        # Every timeline event sync delivered, in order, with "room_id" added.
        self._events: list[JsonDict] = []
        self._events_by_room: dict[str, list[JsonDict]] = {}
        self._seen_ids: set[str] = set()
        # Pending invites: room id -> stripped invite_state events.
        self._invites: dict[str, list[JsonDict]] = {}

    async def sync_once(self, long_poll: float = 0.0) -> list[JsonDict]:
        """One ``/sync``, long-polling up to ``long_poll`` s; returns the new timeline events."""
        since = self.next_batch
        params = {"timeout": str(int(long_poll * 1000)), "filter": _SYNC_FILTER}
        if since is not None:
            params["since"] = since
        data = await self.request(
            "GET", "/_matrix/client/v3/sync", params=params, http_timeout=long_poll + 30.0
        )
        rooms = data.get("rooms", {})
        new: list[JsonDict] = []
        for room_id, room in rooms.get("join", {}).items():
            self._invites.pop(room_id, None)
            timeline = room.get("timeline", {})
            events = timeline.get("events", [])
            if timeline.get("limited") and since is not None and timeline.get("prev_batch"):
                events = await self._backfill(room_id, timeline["prev_batch"], since) + events
            new.extend(self._remember(room_id, events))
        for room_id, room in rooms.get("invite", {}).items():
            self._invites[room_id] = room.get("invite_state", {}).get("events", [])
        for room_id, room in rooms.get("leave", {}).items():
            self._invites.pop(room_id, None)
            new.extend(self._remember(room_id, room.get("timeline", {}).get("events", [])))
        self.next_batch = data["next_batch"]
        return new

    async def _backfill(self, room_id: str, prev_batch: str, since: str) -> list[JsonDict]:
        """Fetch what a limited (gappy) timeline skipped between ``since`` and ``prev_batch``."""
        newest_first: list[JsonDict] = []
        params = {"dir": "b", "from": prev_batch, "to": since, "limit": "1000"}
        for _ in range(_MAX_BACKFILL_PAGES):
            data = await self.request(
                "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/messages", params=params
            )
            newest_first.extend(data.get("chunk", []))
            if not data.get("chunk") or "end" not in data:
                break
            params["from"] = data["end"]
        return newest_first[::-1]

    def _remember(self, room_id: str, events: Iterable[JsonDict]) -> list[JsonDict]:
        fresh: list[JsonDict] = []
        for raw in events:
            event_id = raw.get("event_id")
            if event_id in self._seen_ids:
                continue
            if event_id is not None:
                self._seen_ids.add(event_id)
            event = {**raw, "room_id": room_id}
            self._events.append(event)
            self._events_by_room.setdefault(room_id, []).append(event)
            fresh.append(event)
        return fresh

    def seen_events(self, room_id: str | None = None) -> list[JsonDict]:
        """Every timeline event syncs have delivered so far (optionally for one room)."""
        return list(self._events if room_id is None else self._events_by_room.get(room_id, []))

    async def _sync_until(self, deadline: float) -> list[JsonDict]:
        """One long-poll bounded by ``deadline`` (always at least one attempt).

        Connection errors are retried until the deadline: fault tests restart Synapse.
        """
        loop = asyncio.get_running_loop()
        while True:
            remaining = max(deadline - loop.time(), 0.0)
            try:
                return await self.sync_once(min(remaining, self.sync_timeout))
            except (aiohttp.ClientError, TimeoutError):
                pass
            except MatrixRequestError as err:
                if err.status < 500:
                    raise
            if loop.time() >= deadline:
                return []
            # Synapse is down: try again soon rather than spinning on refused connections.
            await asyncio.sleep(min(_RETRY_AFTER_CONNECTION_ERROR, remaining))

    async def wait_for(
        self,
        predicate: EventPredicate,
        *,
        room_id: str | None = None,
        timeout: float = 30.0,
    ) -> JsonDict:
        """Return the first timeline event (``room_id`` added) matching ``predicate``.

        Events delivered by earlier syncs count, oldest first, so an event that arrived
        before this call is found; the same event is returned again by a later call with
        the same predicate (filter on event ids to move on). Raises ``TimeoutError``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for event in self.seen_events(room_id):
            if _matches(predicate, event):
                return event
        while True:
            for event in await self._sync_until(deadline):
                if (room_id is None or event["room_id"] == room_id) and _matches(predicate, event):
                    return event
            if loop.time() >= deadline:
                break
        recent = "\n  ".join(_summary(e) for e in self.seen_events(room_id)[-8:])
        where = f"in {room_id}" if room_id else "in any room"
        raise TimeoutError(
            f"{self.user_id}: no matching event {where} within {timeout}s; "
            f"latest seen:\n  {recent or '(none)'}"
        )

    async def invited_rooms(self) -> list[str]:
        """Rooms with a pending invite for this user (after a non-blocking sync)."""
        await self.sync_once(0)
        return list(self._invites)

    def invite_state(self, room_id: str) -> list[JsonDict]:
        """The stripped state that came with a pending invite (name, inviter's member event)."""
        return list(self._invites.get(room_id, []))

    async def wait_for_invite(
        self,
        room_id: str | None = None,
        *,
        timeout: float = 30.0,
    ) -> str:
        """Wait for an invite (to ``room_id``, or the oldest pending one) and return its room id."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        synced = False
        while True:
            pending = [r for r in self._invites if room_id is None or r == room_id]
            if pending:
                return pending[0]
            if synced and loop.time() >= deadline:
                raise TimeoutError(f"{self.user_id}: no invite to {room_id or 'any room'}")
            await self._sync_until(deadline)
            synced = True
