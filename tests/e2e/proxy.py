"""A loopback HTTP proxy between the bridge and Synapse that can hang chosen requests.

The bridge's ``homeserver.address`` points at the proxy; the proxy forwards everything to Synapse
and counts the answers by status (so a test can count 429s), except requests matching a
:class:`Hang` rule, which it holds open:

- ``forward=False``: the request never reaches Synapse (a homeserver that stopped answering);
- ``forward=True``: Synapse processes it, but its answer is withheld (the answer got lost) — the
  case where only a deterministic transaction id keeps the retry from doubling the message.

A held request stays open until the rule is released or the proxy stops; the client gives up on
its own timeout. Only 127.0.0.1 is bound and only the given upstream is contacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from yarl import URL

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "content-length"}
)


@dataclass(frozen=True)
class Seen:
    """One forwarded request and Synapse's answer."""

    method: str
    path: str
    status: int
    at: float
    """``time.monotonic()`` when the request arrived."""
    retry_after_ms: int | None = None
    query: str = ""
    body: bytes = b""
    """What the bridge sent (the security tests look for secrets in it)."""


@dataclass
class Hang:
    method: str | None
    path: re.Pattern[str] | None
    forward: bool
    times: int | None
    """Hang this many matching requests, then let the rest through; None: all of them."""
    matched: int = 0
    holding: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def matches(self, method: str, path: str) -> bool:
        if self.released.is_set() or (self.times is not None and self.matched >= self.times):
            return False
        return (self.method is None or self.method == method) and (
            self.path is None or self.path.search(path) is not None
        )


class HomeserverProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.rules: list[Hang] = []
        self.statuses: Counter[int] = Counter()
        self.log: list[Seen] = []
        self.held: list[Seen] = []
        """Requests a ``forward=False`` rule held: they never reached Synapse (status 0)."""
        self._changed = asyncio.Condition()
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> HomeserverProxy:
        self._http = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        for rule in self.rules:
            rule.released.set()
        if self._runner:
            await self._runner.cleanup()
        if self._http:
            await self._http.close()

    def hang(
        self,
        *,
        method: str | None = None,
        path: str | None = None,
        forward: bool = False,
        times: int | None = None,
    ) -> Hang:
        rule = Hang(method, re.compile(path) if path else None, forward, times)
        self.rules.append(rule)
        return rule

    def release(self, rule: Hang) -> None:
        rule.released.set()
        self.rules.remove(rule)

    def count(self, status: int, path: str | None = None) -> int:
        pattern = re.compile(path) if path else None
        return sum(
            1 for r in self.log if r.status == status and (not pattern or pattern.search(r.path))
        )

    async def wait_holding(self, rule: Hang, n: int = 1, timeout: float = 30.0) -> None:
        """Until ``rule`` holds ``n`` requests at once."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: rule.holding >= n), timeout)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        rule = next((r for r in self.rules if r.matches(request.method, path)), None)
        body = await request.read()
        if rule is not None:
            rule.matched += 1
            if not rule.forward:
                seen = Seen(
                    request.method, path, 0, time.monotonic(), None, request.query_string, body
                )
                self.held.append(seen)
            answer = await self._forward(request, body) if rule.forward else None
            await self._hold(rule)
            if answer is None:
                return web.Response(status=504, text="held by the test proxy, then released")
            return answer
        return await self._forward(request, body)

    async def _hold(self, rule: Hang) -> None:
        async with self._changed:
            rule.holding += 1
            self._changed.notify_all()
        try:
            await rule.released.wait()
        finally:
            rule.holding -= 1

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        assert self._http is not None
        arrived = time.monotonic()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with self._http.request(
            request.method,
            URL(self.upstream + request.raw_path, encoded=True),  # ids stay escaped as sent
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as upstream:
            data = await upstream.read()
            status = upstream.status
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
        self.statuses[status] += 1
        retry_after = None
        if status == 429:
            with contextlib.suppress(ValueError, AttributeError):
                retry_after = json.loads(data).get("retry_after_ms")
        self.log.append(
            Seen(
                request.method,
                request.path,
                status,
                arrived,
                retry_after,
                request.query_string,
                body,
            )
        )
        return web.Response(status=status, body=data, headers=out)
