"""A small Matrix client-server API client for test users, driven by ``/sync`` long-polls.

Tests and benchmarks use it to play the human side of a room: send
messages, react, redact, and above all wait for what the bridge posts. Waiting never
sleeps (``matrix_sync.py``); requests and their errors are ``matrix_http.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from claude_bridge.devenv.synapse import LocalSynapse
from tests.matrix_http import JsonDict, MatrixRequestError, q
from tests.matrix_sync import MatrixSync

__all__ = ["JsonDict", "MatrixRequestError", "MatrixTestClient", "user_client"]


class MatrixTestClient(MatrixSync):
    """One Matrix user: the rooms they act in and what they send there, on top of their syncs.

    With ``appservice=True`` the token is an appservice ``as_token`` and every request
    carries ``?user_id=<user_id>`` (appservice identity assertion).
    """

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
        data = await self.request("POST", f"/_matrix/client/v3/join/{q(room_id_or_alias)}", body={})
        room_id: str = data["room_id"]
        self._invites.pop(room_id, None)
        return room_id

    async def leave(self, room_id: str) -> None:
        await self.request("POST", f"/_matrix/client/v3/rooms/{q(room_id)}/leave", body={})
        self._invites.pop(room_id, None)

    async def resolve_alias(self, alias: str) -> str | None:
        try:
            data = await self.request("GET", f"/_matrix/client/v3/directory/room/{q(alias)}")
        except MatrixRequestError as err:
            if err.status == 404:
                return None
            raise
        room_id: str = data["room_id"]
        return room_id

    async def joined_members(self, room_id: str) -> dict[str, JsonDict]:
        """``{user_id: {"display_name": ..., "avatar_url": ...}}`` of the joined members."""
        data = await self.request("GET", f"/_matrix/client/v3/rooms/{q(room_id)}/joined_members")
        joined: dict[str, JsonDict] = data["joined"]
        return joined

    async def room_state(self, room_id: str) -> list[JsonDict]:
        state: list[JsonDict] = await self.request(
            "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/state"
        )
        return state

    async def get_event(self, room_id: str, event_id: str) -> JsonDict:
        event: JsonDict = await self.request(
            "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/event/{q(event_id)}"
        )
        return event

    async def messages(self, room_id: str, limit: int = 100) -> list[JsonDict]:
        """The newest ``limit`` timeline events of the room, oldest first."""
        newest_first: list[JsonDict] = []
        params = {"dir": "b", "limit": str(min(limit, 1000))}
        while len(newest_first) < limit:
            data = await self.request(
                "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/messages", params=params
            )
            newest_first.extend(data.get("chunk", []))
            if not data.get("chunk") or "end" not in data:
                break
            params["from"] = data["end"]
        return newest_first[:limit][::-1]

    # -- sending ----------------------------------------------------------------------

    async def send_event(self, room_id: str, event_type: str, content: JsonDict) -> str:
        path = f"/_matrix/client/v3/rooms/{q(room_id)}/send/{q(event_type)}/{uuid.uuid4().hex}"
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
        path = f"/_matrix/client/v3/rooms/{q(room_id)}/redact/{q(event_id)}/{uuid.uuid4().hex}"
        data = await self.request("PUT", path, body={"reason": reason} if reason else {})
        redaction_id: str = data["event_id"]
        return redaction_id


async def user_client(
    synapse: LocalSynapse, localpart: str, *, password: str = "pw", admin: bool = False
) -> MatrixTestClient:
    """Register a user on ``synapse`` and return a client logged in as them."""
    user_id, token = await synapse.register_user(localpart, password, admin)
    return MatrixTestClient(synapse.url, user_id, token)
