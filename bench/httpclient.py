"""A minimal HTTP/1.1 keep-alive client for hook POSTs, light enough not to be what we measure.

aiohttp's client costs a few hundred microseconds per request in the benchmark process, which
shares two cores with Synapse and the bridge; this writes the request bytes itself and reads the
answer by ``Content-Length``. ``pipeline`` keeps a window of requests in flight on one connection:
the server handles them one after another in order (as one Claude Code session's events are),
without waiting a round trip between them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence


class HTTPError(Exception):
    pass


class HookConnection:
    def __init__(self, host: str, port: int, token: str, path: str = "/claude/v1/hooks") -> None:
        self.host = host
        self.port = port
        self.token = token
        self.path = path
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        ).encode()

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except (ConnectionError, OSError):
                pass
        self._writer = self._reader = None

    def request_bytes(self, body: bytes, extra_headers: str = "") -> bytes:
        return self._head + f"Content-Length: {len(body)}\r\n{extra_headers}\r\n".encode() + body

    async def _read_response(self) -> tuple[int, bytes]:
        assert self._reader is not None
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = None
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if chunked:
            body = b""
            while True:
                size = int((await self._reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
                if size == 0:
                    await self._reader.readuntil(b"\r\n")
                    break
                body += await self._reader.readexactly(size + 2)
                body = body[:-2]
            return status, body
        body = await self._reader.readexactly(length or 0)
        return status, body

    async def post(self, body: bytes, extra_headers: str = "") -> tuple[int, bytes, float]:
        """One request, one answer; returns (status, body, seconds)."""
        if self._writer is None:
            await self.connect()
        assert self._writer is not None
        data = self.request_bytes(body, extra_headers)
        start = time.perf_counter()
        self._writer.write(data)
        status, answer = await self._read_response()
        return status, answer, time.perf_counter() - start

    async def pipeline(
        self, bodies: Sequence[bytes], window: int = 32
    ) -> tuple[list[int], list[float], float, float]:
        """Send every body with up to ``window`` requests in flight, in order.

        Returns (statuses, per-request seconds from write to answer, time of the first write,
        time of the last answer) — times from ``time.perf_counter()``.
        """
        if self._writer is None:
            await self.connect()
        assert self._writer is not None
        writer = self._writer
        slots = asyncio.Semaphore(window)
        sent_at: list[float] = [0.0] * len(bodies)
        statuses: list[int] = [0] * len(bodies)
        took: list[float] = [0.0] * len(bodies)
        payloads = [self.request_bytes(b) for b in bodies]

        async def write_all() -> None:
            for i, data in enumerate(payloads):
                await slots.acquire()
                sent_at[i] = time.perf_counter()
                writer.write(data)
                if writer.transport.get_write_buffer_size() > 1 << 16:
                    await writer.drain()

        first = time.perf_counter()
        writing = asyncio.create_task(write_all())
        try:
            for i in range(len(bodies)):
                status, _ = await self._read_response()
                now = time.perf_counter()
                statuses[i] = status
                took[i] = now - sent_at[i]
                slots.release()
            last = time.perf_counter()
            await writing
        finally:
            if not writing.done():
                writing.cancel()
        return statuses, took, first, last


class GetConnection(HookConnection):
    """Keep-alive GETs with the hook token (the REST API lives on the hook server)."""

    async def get(self, path: str) -> tuple[int, bytes, float]:
        if self._writer is None:
            await self.connect()
        assert self._writer is not None
        data = (
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {self.token}\r\n\r\n"
        ).encode()
        start = time.perf_counter()
        self._writer.write(data)
        status, body = await self._read_response()
        return status, body, time.perf_counter() - start
