"""The client-server calls the bridge makes, as the bot or a ghost, with bounded timeouts.

Requests go over the appservice's one aiohttp session with the ``as_token`` and ``user_id``
masquerading, but without mautrix's ``IntentAPI`` and its implicit joins and retries: delivery
decides when to join and when to retry, so a send is exactly one request, a retry reuses the same
transaction id, and a 429's ``retry_after_ms`` reaches the retry policy.

Every body passes the scrubber in :meth:`MatrixClient.request` (see ``outgoing.py``): whatever
path built it, no secret the patterns know reaches the homeserver.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import quote as _quote

import aiohttp

from claude_bridge.config.sections.mirror import RedactConfig
from claude_bridge.matrix.outgoing import scrub_body, scrub_upload
from claude_bridge.metrics import timed_send
from claude_bridge.render.scrub import Scrubber, scrubber_for

# Room ids, aliases and transaction ids go into paths fully escaped.
quote = partial(_quote, safe="")


class MatrixError(Exception):
    """A failed homeserver request, classified for the retry policy."""

    def __init__(
        self, message: str, *, status: int = 0, errcode: str = "", retry_after_ms: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.errcode = errcode
        self.retry_after_ms = retry_after_ms

    @property
    def temporary(self) -> bool:
        """Worth retrying: unreachable, timed out, rate-limited or a server error."""
        return self.status == 0 or self.status == 429 or self.status >= 500


class MatrixClient:
    def __init__(
        self,
        session: aiohttp.ClientSession | Callable[[], aiohttp.ClientSession],
        base_url: str,
        as_token: str,
        bot_mxid: str,
        *,
        timeout: float = 30.0,
        scrub: Scrubber | None = None,
    ) -> None:
        self._session = session
        self.base_url = base_url.rstrip("/")
        self.as_token = as_token
        self.bot_mxid = bot_mxid
        self.timeout = timeout
        self.scrub = scrub or scrubber_for(RedactConfig(), (as_token,))
        self._default_room_version: str | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The appservice opens its session when it starts, after the client is built: the
        client may be given a function that returns it."""
        return self._session() if callable(self._session) else self._session

    async def request(
        self,
        method: str,
        path: str,
        content: Any = None,
        *,
        user_id: str | None = None,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        parsed = await self._call(
            method, path, content, user_id=user_id, query=query, headers=headers, timeout=timeout
        )
        return parsed if isinstance(parsed, dict) else {}

    async def request_list(
        self, method: str, path: str, *, user_id: str | None = None
    ) -> list[Any]:
        """A request whose answer is a JSON array (e.g. a room's state)."""
        parsed = await self._call(method, path, None, user_id=user_id)
        return parsed if isinstance(parsed, list) else []

    async def _call(
        self,
        method: str,
        path: str,
        content: Any,
        *,
        user_id: str | None = None,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        params = {**(query or {}), "user_id": user_id or self.bot_mxid}
        if "filename" in params:
            params["filename"] = self.scrub.text(params["filename"])
        hdrs = {"Authorization": f"Bearer {self.as_token}", **(headers or {})}
        data: bytes | None = None
        if isinstance(content, bytes):
            data = scrub_upload(self.scrub, content, hdrs.get("Content-Type", ""))
        elif isinstance(content, dict):
            data = json.dumps(scrub_body(self.scrub, content), ensure_ascii=False).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif content is not None:
            data = json.dumps(self.scrub.value(content), ensure_ascii=False).encode()
            hdrs.setdefault("Content-Type", "application/json")
        limit = timeout or self.timeout
        try:
            async with asyncio.timeout(limit):
                async with self.session.request(
                    method, self.base_url + path, params=params, data=data, headers=hdrs
                ) as resp:
                    body = await resp.read()
                    status = resp.status
        except TimeoutError:
            raise MatrixError(f"{method} {path}: no answer in {limit}s") from None
        except (aiohttp.ClientError, OSError) as e:
            raise MatrixError(f"{method} {path}: {e!r}") from None
        try:
            parsed = json.loads(body) if body else {}
        except ValueError:
            parsed = {}
        if 200 <= status < 300:
            return parsed
        if not isinstance(parsed, dict):
            parsed = {}
        retry_after = parsed.get("retry_after_ms")
        raise MatrixError(
            f"{method} {path}: {status} {parsed.get('errcode', '')} {parsed.get('error', '')}".strip(),
            status=status,
            errcode=str(parsed.get("errcode", "")),
            retry_after_ms=int(retry_after) if isinstance(retry_after, int | float) else None,
        )

    async def versions(self) -> dict[str, Any]:
        return await self.request("GET", "/_matrix/client/versions", timeout=5)

    async def whoami(self, user_id: str | None = None) -> str:
        resp = await self.request("GET", "/_matrix/client/v3/account/whoami", user_id=user_id)
        return str(resp["user_id"])

    async def ping(self, appservice_id: str, txn_id: str | None = None) -> int:
        resp = await self.request(
            "POST",
            f"/_matrix/client/v1/appservice/{quote(appservice_id)}/ping",
            {"transaction_id": txn_id} if txn_id else {},
        )
        return int(resp.get("duration_ms", 0))

    async def register(self, localpart: str) -> None:
        """Register an appservice user; already registered is fine."""
        try:
            await self.request(
                "POST",
                "/_matrix/client/v3/register",
                {"type": "m.login.application_service", "username": localpart},
                query={"kind": "user"},
            )
        except MatrixError as e:
            if e.errcode != "M_USER_IN_USE":
                raise

    async def set_displayname(self, user_id: str, name: str) -> None:
        await self.request(
            "PUT",
            f"/_matrix/client/v3/profile/{quote(user_id)}/displayname",
            {"displayname": name},
            user_id=user_id,
        )

    async def profile(self, user_id: str) -> dict[str, Any]:
        """The user's global profile (``displayname``, ``avatar_url``); {} when it has none."""
        try:
            return await self.request(
                "GET", f"/_matrix/client/v3/profile/{quote(user_id)}", user_id=user_id
            )
        except MatrixError as e:
            if e.status == 404:
                return {}
            raise

    async def set_avatar_url(self, user_id: str, url: str) -> None:
        await self.request(
            "PUT",
            f"/_matrix/client/v3/profile/{quote(user_id)}/avatar_url",
            {"avatar_url": url},
            user_id=user_id,
        )

    async def default_room_version(self) -> str:
        """The version new rooms get (it decides whether their creator may be listed in power
        levels); asked once per process."""
        if self._default_room_version is None:
            resp = await self.request("GET", "/_matrix/client/v3/capabilities")
            versions = resp.get("capabilities", {}).get("m.room_versions", {})
            self._default_room_version = str(versions.get("default") or "1")
        return self._default_room_version

    async def create_room(self, user_id: str, body: dict[str, Any]) -> str:
        resp = await self.request("POST", "/_matrix/client/v3/createRoom", body, user_id=user_id)
        return str(resp["room_id"])

    async def resolve_alias(self, alias: str) -> str | None:
        try:
            resp = await self.request("GET", f"/_matrix/client/v3/directory/room/{quote(alias)}")
        except MatrixError as e:
            if e.status == 404:
                return None
            raise
        return str(resp["room_id"])

    async def join(self, user_id: str, room: str) -> str:
        resp = await self.request(
            "POST", f"/_matrix/client/v3/join/{quote(room)}", {}, user_id=user_id
        )
        return str(resp["room_id"])

    async def invite(self, user_id: str, room_id: str, invitee: str) -> None:
        path = f"/_matrix/client/v3/rooms/{quote(room_id)}/invite"
        try:
            await self.request("POST", path, {"user_id": invitee}, user_id=user_id)
        except MatrixError as e:
            said = str(e).lower()
            if e.status == 403 and "banned" in said:
                # The bridge bans whoever is in a room without a level; it invites only people
                # who have one now, so that ban is over.
                await self.unban(user_id, room_id, invitee, "given a level in this bridge")
                await self.request("POST", path, {"user_id": invitee}, user_id=user_id)
            # Already a member or already invited: the goal is reached.
            elif not (e.status == 403 and "already" in said):
                raise

    async def leave(self, user_id: str, room_id: str) -> None:
        await self.request(
            "POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/leave", {}, user_id=user_id
        )

    async def ban(self, user_id: str, room_id: str, target: str, reason: str) -> None:
        """Remove ``target`` from the room for good (a ban also withdraws an invite). Not a kick:
        Synapse lets anyone who has left a room, even an invite never accepted, read its
        ``shared`` history up to that point; a banned user reads nothing."""
        await self.request(
            "POST",
            f"/_matrix/client/v3/rooms/{quote(room_id)}/ban",
            {"user_id": target, "reason": reason},
            user_id=user_id,
        )

    async def unban(self, user_id: str, room_id: str, target: str, reason: str) -> None:
        await self.request(
            "POST",
            f"/_matrix/client/v3/rooms/{quote(room_id)}/unban",
            {"user_id": target, "reason": reason},
            user_id=user_id,
        )

    async def room_state(self, user_id: str, room_id: str) -> list[dict[str, Any]]:
        """The room's current state events, read as ``user_id`` (who must be in the room)."""
        resp = await self.request_list(
            "GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/state", user_id=user_id
        )
        return [e for e in resp if isinstance(e, dict)]

    async def state_event(
        self, user_id: str, room_id: str, event_type: str, state_key: str = ""
    ) -> dict[str, Any] | None:
        """One state event's content, or None when the room has none of that kind."""
        path = f"/_matrix/client/v3/rooms/{quote(room_id)}/state/{quote(event_type)}/{quote(state_key)}"
        try:
            return await self.request("GET", path, user_id=user_id)
        except MatrixError as e:
            if e.errcode == "M_NOT_FOUND":
                return None
            raise

    @timed_send("message")
    async def send_event(
        self, user_id: str, room_id: str, event_type: str, content: dict[str, Any], txn_id: str
    ) -> str:
        resp = await self.request(
            "PUT",
            f"/_matrix/client/v3/rooms/{quote(room_id)}/send/{quote(event_type)}/{quote(txn_id)}",
            content,
            user_id=user_id,
        )
        return str(resp["event_id"])

    @timed_send("state")
    async def send_state(
        self, user_id: str, room_id: str, event_type: str, state_key: str, content: dict[str, Any]
    ) -> str:
        resp = await self.request(
            "PUT",
            f"/_matrix/client/v3/rooms/{quote(room_id)}/state/{quote(event_type)}/{quote(state_key)}",
            content,
            user_id=user_id,
        )
        return str(resp["event_id"])

    @timed_send("upload")
    async def upload(self, user_id: str, data: bytes, filename: str, mimetype: str) -> str:
        resp = await self.request(
            "POST",
            "/_matrix/media/v3/upload",
            data,
            user_id=user_id,
            query={"filename": filename},
            headers={"Content-Type": mimetype},
        )
        return str(resp["content_uri"])
