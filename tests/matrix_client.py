"""A small Matrix client-server API client for test users, driven by ``/sync`` long-polls.

Tests and benchmarks use it to play the human side of a room: send
messages, react, redact, and above all wait for what the bridge posts. Waiting never
sleeps: ``wait_for`` long-polls ``/sync`` until a matching event arrives or a deadline
passes, and it also looks through every event earlier syncs already delivered.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from claude_bridge.devenv.synapse import LocalSynapse

__all__ = ["JsonDict", "MatrixRequestError", "MatrixTestClient", "user_client"]

JsonDict = dict[str, Any]
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


class MatrixRequestError(Exception):
    """The homeserver answered a request with an error status."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        self.errcode: str | None = body.get("errcode") if isinstance(body, dict) else None
        super().__init__(f"{method} {path} -> {status}: {body}")


def _q(part: str) -> str:
    """Quote one path segment; room aliases start with '#', which must never reach a URL raw."""
    return quote(part, safe="")


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


class MatrixTestClient:
    """One Matrix user over aiohttp. Usable from any event loop, one loop at a time.

    With ``appservice=True`` the token is an appservice ``as_token`` and every request
    carries ``?user_id=<user_id>`` (appservice identity assertion).
    """

    def __init__(
        self,
        base_url: str,
        user_id: str,
        access_token: str,
        *,
        appservice: bool = False,
        sync_timeout: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.user_id = user_id
        self.access_token = access_token
        self.appservice = appservice
        self.sync_timeout = sync_timeout
        self.next_batch: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        # Every timeline event sync delivered, in order, with "room_id" added.
        self._events: list[JsonDict] = []
        self._events_by_room: dict[str, list[JsonDict]] = {}
        self._seen_ids: set[str] = set()
        # Pending invites: room id -> stripped invite_state events.
        self._invites: dict[str, list[JsonDict]] = {}

    # -- plumbing ---------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        # A session is bound to the loop it was made on; scripts may asyncio.run() twice.
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self.access_token}"}
            )
            self._session_loop = loop
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: JsonDict | None = None,
        http_timeout: float = 30.0,
    ) -> Any:
        """Call ``path`` (already quoted, starting with ``/_matrix``) and return its JSON."""
        query = dict(params or {})
        if self.appservice:
            query["user_id"] = self.user_id
        url = URL(self.base_url + path, encoded=True)
        async with self._http().request(
            method,
            url,
            params=query,
            json=body,
            timeout=aiohttp.ClientTimeout(total=http_timeout),
        ) as resp:
            data = await resp.json(content_type=None) if resp.content_length != 0 else None
            if resp.status >= 400:
                raise MatrixRequestError(method, path, resp.status, data)
            return data

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> MatrixTestClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- rooms ------------------------------------------------------------------------

    async def whoami(self) -> JsonDict:
        result: JsonDict = await self.request("GET", "/_matrix/client/v3/account/whoami")
        return result

    async def create_room(
        self,
        *,
        name: str | None = None,
        invite: Sequence[str] = (),
        preset: str = "private_chat",
        is_direct: bool = False,
        alias_localpart: str | None = None,
        extra: JsonDict | None = None,
    ) -> str:
        body: JsonDict = {"preset": preset, "invite": list(invite), "is_direct": is_direct}
        if name is not None:
            body["name"] = name
        if alias_localpart is not None:
            body["room_alias_name"] = alias_localpart
        body.update(extra or {})
        data = await self.request("POST", "/_matrix/client/v3/createRoom", body=body)
        room_id: str = data["room_id"]
        return room_id

    async def join(self, room_id_or_alias: str) -> str:
        data = await self.request(
            "POST", f"/_matrix/client/v3/join/{_q(room_id_or_alias)}", body={}
        )
        room_id: str = data["room_id"]
        self._invites.pop(room_id, None)
        return room_id

    async def leave(self, room_id: str) -> None:
        await self.request("POST", f"/_matrix/client/v3/rooms/{_q(room_id)}/leave", body={})
        self._invites.pop(room_id, None)

    async def resolve_alias(self, alias: str) -> str | None:
        try:
            data = await self.request("GET", f"/_matrix/client/v3/directory/room/{_q(alias)}")
        except MatrixRequestError as err:
            if err.status == 404:
                return None
            raise
        room_id: str = data["room_id"]
        return room_id

    async def joined_members(self, room_id: str) -> dict[str, JsonDict]:
        """``{user_id: {"display_name": ..., "avatar_url": ...}}`` of the joined members."""
        data = await self.request("GET", f"/_matrix/client/v3/rooms/{_q(room_id)}/joined_members")
        joined: dict[str, JsonDict] = data["joined"]
        return joined

    async def room_state(self, room_id: str) -> list[JsonDict]:
        state: list[JsonDict] = await self.request(
            "GET", f"/_matrix/client/v3/rooms/{_q(room_id)}/state"
        )
        return state

    async def get_event(self, room_id: str, event_id: str) -> JsonDict:
        event: JsonDict = await self.request(
            "GET", f"/_matrix/client/v3/rooms/{_q(room_id)}/event/{_q(event_id)}"
        )
        return event

    async def messages(self, room_id: str, limit: int = 100) -> list[JsonDict]:
        """The newest ``limit`` timeline events of the room, oldest first."""
        newest_first: list[JsonDict] = []
        params = {"dir": "b", "limit": str(min(limit, 1000))}
        while len(newest_first) < limit:
            data = await self.request(
                "GET", f"/_matrix/client/v3/rooms/{_q(room_id)}/messages", params=params
            )
            newest_first.extend(data.get("chunk", []))
            if not data.get("chunk") or "end" not in data:
                break
            params["from"] = data["end"]
        return newest_first[:limit][::-1]

    # -- sending ----------------------------------------------------------------------

    async def send_event(self, room_id: str, event_type: str, content: JsonDict) -> str:
        path = f"/_matrix/client/v3/rooms/{_q(room_id)}/send/{_q(event_type)}/{uuid.uuid4().hex}"
        data = await self.request("PUT", path, body=content)
        event_id: str = data["event_id"]
        return event_id

    async def send_text(
        self,
        room_id: str,
        body: str,
        *,
        html: str | None = None,
        reply_to: str | None = None,
        thread_root: str | None = None,
    ) -> str:
        content: JsonDict = {"msgtype": "m.text", "body": body}
        if html is not None:
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = html
        if thread_root is not None:
            # A thread message is also a reply (for thread-unaware clients): a real one to
            # reply_to if given, otherwise a fallback to the root.
            content["m.relates_to"] = {
                "rel_type": "m.thread",
                "event_id": thread_root,
                "is_falling_back": reply_to is None,
                "m.in_reply_to": {"event_id": reply_to or thread_root},
            }
        elif reply_to is not None:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        return await self.send_event(room_id, "m.room.message", content)

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        return await self.send_event(room_id, "m.reaction", content)

    async def redact(self, room_id: str, event_id: str, reason: str | None = None) -> str:
        path = f"/_matrix/client/v3/rooms/{_q(room_id)}/redact/{_q(event_id)}/{uuid.uuid4().hex}"
        data = await self.request("PUT", path, body={"reason": reason} if reason else {})
        redaction_id: str = data["event_id"]
        return redaction_id

    # -- sync and waiting -------------------------------------------------------------

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
                "GET", f"/_matrix/client/v3/rooms/{_q(room_id)}/messages", params=params
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


async def user_client(
    synapse: LocalSynapse, localpart: str, *, password: str = "pw", admin: bool = False
) -> MatrixTestClient:
    """Register a user on ``synapse`` and return a client logged in as them."""
    user_id, token = await synapse.register_user(localpart, password, admin)
    return MatrixTestClient(synapse.url, user_id, token)
