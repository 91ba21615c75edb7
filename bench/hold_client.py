"""The hold benchmark's load generator: thousands of held connections, in a process of its own.

``python -m bench.hold_client SPEC.json`` raises its own soft ``RLIMIT_NOFILE`` to the hard
limit, then opens one connection per request in the spec and writes the request:

- ``waits``: paths of background-waiter long-polls (``GET …/wait?timeout=…&since=…``). A 204
  (the poll's time is up) is answered with the same GET again on the same connection, as
  ``claude-bridge-hook wait`` does; ``repoll`` (seconds) replaces the timeout of every poll after
  the first, so a spread of first timeouts gives a steady rate of re-polls;
- ``posts``: hook bodies (PermissionRequests) that the bridge holds until someone decides.

It prints JSON lines on stdout: ``{"ready": …}`` once every connection is open and its request
written, then one line per answer that ends a hold: ``{"k": "w"|"p", "i": index, "t":
time.monotonic(), "s": status}`` (``s`` 0: the connection closed with no answer). A 204 that
is polled again prints nothing but is counted; ``stats`` on stdin prints the counts
(``{"stats": …}``); EOF on stdin closes everything and exits. ``time.monotonic()`` is the
system-wide ``CLOCK_MONOTONIC``, so the parent compares it with its own.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from typing import Any

BATCH = 200  # connections opened at once (the listen backlog is small)


class Held(asyncio.Protocol):
    def __init__(self, client: Client, kind: str, index: int, request: bytes, again: bytes) -> None:
        self.client = client
        self.kind = kind
        self.index = index
        self.request = request
        self.again = again  # the next poll, for a waiter
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        self.buffer += data
        head, sep, _ = self.buffer.partition(b"\r\n\r\n")
        if not sep:
            return
        status = int(head.split(b" ", 2)[1])
        if status == 204 and self.kind == "w":
            self.buffer = b""
            self.client.repolls += 1
            assert self.transport is not None
            self.transport.write(self.again)
            return
        self.finish(status)

    def finish(self, status: int) -> None:
        self.done = True
        self.client.emit({"k": self.kind, "i": self.index, "t": time.monotonic(), "s": status})
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done:
            self.finish(0)


class Client:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.host, self.port, token = spec["host"], int(spec["port"]), spec["token"]
        self.auth = f"Host: {self.host}:{self.port}\r\nAuthorization: Bearer {token}\r\n"
        self.repolls = 0
        self.failed = 0
        self.answers: dict[str, int] = {}
        self.protocols: list[Held] = []

    def emit(self, line: dict[str, Any]) -> None:
        key = f"{line['k']}{line['s']}"
        self.answers[key] = self.answers.get(key, 0) + 1
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    def get(self, path: str) -> bytes:
        return f"GET {path} HTTP/1.1\r\n{self.auth}\r\n".encode()

    def post(self, body: str) -> bytes:
        data = body.encode()
        head = (
            f"POST /claude/v1/hooks HTTP/1.1\r\n{self.auth}Content-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        return head.encode() + data

    async def open(self, kind: str, index: int, request: bytes, again: bytes) -> None:
        loop = asyncio.get_running_loop()
        for attempt in range(20):
            try:
                await loop.create_connection(
                    lambda: self._made(kind, index, request, again), self.host, self.port
                )
                return
            except OSError:
                await asyncio.sleep(0.05 * (attempt + 1))
        self.failed += 1

    def _made(self, kind: str, index: int, request: bytes, again: bytes) -> Held:
        protocol = Held(self, kind, index, request, again)
        self.protocols.append(protocol)
        return protocol

    async def run(self) -> None:
        repoll = self.spec.get("repoll")
        jobs: list[tuple[str, int, bytes, bytes]] = []
        for i, path in enumerate(self.spec["waits"]):
            base, _, _ = path.partition("timeout=")
            rest = path.split("&", 1)[1] if "&" in path else ""
            again = f"{base}timeout={repoll}&{rest}" if repoll else path
            jobs.append(("w", i, self.get(path), self.get(again)))
        jobs += [("p", i, self.post(b), b"") for i, b in enumerate(self.spec["posts"])]
        started = time.monotonic()
        for n in range(0, len(jobs), BATCH):
            await asyncio.gather(*(self.open(*job) for job in jobs[n : n + BATCH]))
        self.emit_ready(time.monotonic() - started)
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            if line.strip() == b"stats":
                self.print_stats()
        for protocol in self.protocols:
            if protocol.transport is not None:
                protocol.done = True
                protocol.transport.close()

    def emit_ready(self, seconds: float) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        ready = {"connections": len(self.protocols), "failed": self.failed,
                 "seconds": round(seconds, 2), "nofile": [soft, hard]}  # fmt: skip
        sys.stdout.write(json.dumps({"ready": ready}) + "\n")
        sys.stdout.flush()

    def print_stats(self) -> None:
        with open("/proc/self/status") as f:
            rss = next((ln.split()[1] for ln in f if ln.startswith("VmRSS")), "0")
        stats = {"repolls": self.repolls, "answers": self.answers, "rss_kb": int(rss)}
        sys.stdout.write(json.dumps({"stats": stats}) + "\n")
        sys.stdout.flush()


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard)
        )
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    asyncio.run(Client(spec).run())


if __name__ == "__main__":
    main()
