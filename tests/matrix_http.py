"""The HTTP side of the test users' Matrix client: one user's authenticated requests.

``matrix_sync.py`` adds ``/sync`` and the waiting on it; ``matrix_client.py`` the room operations.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import aiohttp
from yarl import URL

JsonDict = dict[str, Any]


class MatrixRequestError(Exception):
    """The homeserver answered a request with an error status."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        self.errcode: str | None = body.get("errcode") if isinstance(body, dict) else None
        super().__init__(f"{method} {path} -> {status}: {body}")


def q(part: str) -> str:
    """Quote one path segment; room aliases start with '#', which must never reach a URL raw."""
    return quote(part, safe="")


class MatrixHttp:
    """One Matrix user over aiohttp. Usable from any event loop, one loop at a time.

    With ``appservice=True`` the token is an appservice ``as_token`` and every request
    carries ``?user_id=<user_id>`` (appservice identity assertion).
    """

    def __init__(
        self, base_url: str, user_id: str, access_token: str, *, appservice: bool = False
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.user_id = user_id
        self.access_token = access_token
        self.appservice = appservice
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
