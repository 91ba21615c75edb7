"""The background waiter's long-poll endpoint, served by aiohttp on loopback, stores on SQLite
and Postgres."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from claude_bridge.control.messages import MessageQueue
from claude_bridge.control.signals import thread_key
from claude_bridge.control.waiter import WAIT_PATH, Waiter
from claude_bridge.hooks.held import (
    KEEPALIVE_IDLE,
    KEEPALIVE_INTERVAL,
    KEEPALIVE_PROBES,
    HeldConnections,
)
from tests.stuck_client import request_without_reading, what_arrives
from tests.unit.control.test_responder import Env, make_env, until

TOKENS = {"Bearer laptop-secret": "laptop", "Bearer other-secret": "other"}


class Served:
    def __init__(self, env: Env, server: TestServer, waiter: Waiter) -> None:
        self.env = env
        self.server = server
        self.waiter = waiter
        self.http = aiohttp.ClientSession()

    async def wait(
        self,
        session: str = "T1",  # as Claude Code spells it; the thread id is its lowercase form
        *,
        token: str = "laptop-secret",
        **query: Any,
    ) -> tuple[int, Any]:
        url = self.server.make_url(WAIT_PATH.format(session_id=session))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.get(
            url, params={k: str(v) for k, v in query.items()}, headers=headers
        ) as r:
            return r.status, (await r.json() if r.status not in (204,) else None)


async def serve(
    store_url: str, connections: HeldConnections | None = None, **options: Any
) -> AsyncIterator[Served]:
    async for env in make_env(store_url, **options):
        waiter = Waiter(
            env.responder.options,
            env.thread_store,
            MessageQueue(env.inbox, 9000),
            env.responder,
            env.signals,
            lambda request: TOKENS.get(request.headers.get("Authorization", "")),
            lambda: None,
            connections,
        )
        app = web.Application()
        app.router.add_get(WAIT_PATH, waiter.handle)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        assert server.runner is not None and server.runner.server is not None
        # As the bridge's AppRunner (aiohttp's default): a handler is not cancelled when its
        # client goes away (TestServer's is).
        server.runner.server.handler_cancellation = False
        if connections is not None:  # as the hook server does
            assert connections.hangups.install(server.runner.server)
        served = Served(env, server, waiter)
        try:
            yield served
        finally:
            await served.http.close()
            await server.close()


@pytest.fixture
async def served(store_url: str) -> AsyncIterator[Served]:
    async for s in serve(store_url, idle_after=3600):
        yield s


async def test_refuses_strangers(served: Served) -> None:
    assert (await served.wait(token=""))[0] == 401
    assert (await served.wait("no-such-session"))[0] == 404
    assert (await served.wait(token="other-secret"))[0] == 403  # not the host of this session
    assert (await served.wait(timeout="soon"))[0] == 400


async def test_after_its_owner_polled_another_token_is_still_refused(served: Served) -> None:
    # The owner's poll is remembered (no thread row read per poll); nobody else's is let in.
    assert (await served.wait(timeout=0, since=1))[0] == 204
    assert (await served.wait(timeout=0, since=1))[0] == 204
    assert (await served.wait(token="other-secret", timeout=0, since=2))[0] == 403
    assert (await served.wait(token="", timeout=0))[0] == 401
    assert (await served.wait(timeout=0, since=1))[0] == 204  # and no newer waiter was recorded


async def test_an_idle_session_gets_its_messages(served: Served) -> None:
    await served.env.hook("Stop")  # the turn ended
    poll = asyncio.create_task(served.wait(timeout=30, since=1))
    await until(lambda: served.env.signals.holding(thread_key("t1")) == 1)
    await served.env.say("wake up")
    status, body = await asyncio.wait_for(poll, 10)
    assert status == 200
    assert body["text"] == "Message from @alice:x via Matrix:\n> wake up"
    assert [m["body"] for m in body["messages"]] == ["wake up"]
    assert await served.env.inbox.count_queued("t1") == 0
    assert (await served.wait(timeout=0.2, since=1))[0] == 204  # nothing more


async def test_a_busy_session_is_left_to_its_hook_answers(served: Served) -> None:
    await served.env.hook("PreToolUse", tool_name="Bash")  # mid-turn
    await served.env.say("for the next tool call")
    assert (await served.wait(timeout=0.5, since=1))[0] == 204
    assert await served.env.inbox.count_queued("t1") == 1
    assert "next tool call" in str(await served.env.hook("PostToolUse", tool_name="Bash"))


async def test_a_newer_waiter_supersedes_the_older(served: Served) -> None:
    await served.env.hook("Stop")
    old = asyncio.create_task(served.wait(timeout=30, since=100))
    await until(lambda: served.env.signals.holding(thread_key("t1")) == 1)
    new = asyncio.create_task(served.wait(timeout=30, since=200))
    assert (await asyncio.wait_for(old, 10))[0] == 410
    assert (await served.wait(timeout=30, since=100))[0] == 410  # the old one polling again
    await served.env.say("hello")
    assert (await asyncio.wait_for(new, 10))[0] == 200


async def test_shutdown_ends_the_poll(served: Served) -> None:
    poll = asyncio.create_task(served.wait(timeout=30, since=1))
    await until(lambda: served.env.signals.holding(thread_key("t1")) == 1)
    served.env.signals.close()
    assert (await asyncio.wait_for(poll, 10))[0] == 204


async def test_a_held_poll_gets_tcp_keepalive(store_url: str) -> None:
    """A poll sends nothing for minutes: keepalive probes keep NAT entries alive through it and
    tell the bridge when the peer vanished without a FIN."""
    connections = HeldConnections()
    async for served in serve(store_url, connections, idle_after=3600):
        await served.env.hook("Stop")
        poll = asyncio.create_task(served.wait(timeout=60, since=1))
        await until(lambda: len(connections.hangups) == 1)
        (protocol,) = connections.hangups._watching
        sock = protocol.transport.get_extra_info("socket")  # type: ignore[attr-defined]
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE_IDLE
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == KEEPALIVE_INTERVAL
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == KEEPALIVE_PROBES
        poll.cancel()
        await until(lambda: connections.held == 0, timeout=10)


async def test_a_client_that_leaves_ends_its_poll_at_once(store_url: str) -> None:
    """With the hook server's ``Hangups`` (aiohttp tells when a connection closes) a waiter
    whose client went away is let go at once, not at the next sweep (IDLE_POLL, 5 s)."""
    connections = HeldConnections()
    async for served in serve(store_url, connections, idle_after=3600):
        await served.env.hook("Stop")
        for _ in range(3):
            poll = asyncio.create_task(served.wait(timeout=60, since=1))
            await until(lambda: connections.held == 1)
            assert len(connections.hangups) == 1
            poll.cancel()
            loop = asyncio.get_running_loop()
            left = loop.time()
            await until(lambda: connections.held == 0, timeout=10)
            assert loop.time() - left < 1.0
            assert len(connections.hangups) == 0
            assert served.env.signals.holding(thread_key("t1")) == 0
        # A poll that ends by itself leaves nothing watched either.
        assert (await served.wait(timeout=0.2, since=1))[0] == 204
        assert len(connections.hangups) == 0


async def test_messages_whose_answer_the_host_never_takes_go_back_to_the_queue(
    served: Served,
) -> None:
    """The answer is written into a connection whose peer acknowledges nothing: the messages go
    back to the queue (they were claimed), none of the answer arrives later, and the next poll
    carries them: nothing is lost, nothing is read twice."""
    long = "x" * 8000  # more than the client's receive window
    served.waiter.taken_within = 1.0
    await served.env.hook("Stop")
    assert served.server.port is not None
    path = WAIT_PATH.format(session_id="T1") + "?timeout=30&since=1"
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer laptop-secret\r\n\r\n"
    stuck = await asyncio.to_thread(request_without_reading, served.server.port, request.encode())
    await until(lambda: served.env.signals.holding(thread_key("t1")) == 1)
    await served.env.say(long)
    await until(lambda: served.waiter.connections.held == 0, timeout=20)  # given up on
    assert await served.env.inbox.count_queued("t1") == 1
    assert long.encode() not in await asyncio.to_thread(what_arrives, stuck)
    # Back in its own session's queue: another host's token still gets nothing of it.
    assert (await served.wait(token="other-secret", timeout=0.2, since=1))[0] == 403
    assert await served.env.inbox.count_queued("t1") == 1

    status, body = await served.wait(timeout=30, since=1)
    assert status == 200
    assert [m["body"] for m in body["messages"]] == [long]
    await until(lambda: served.waiter.connections.held == 0, timeout=20)
    assert await served.env.inbox.count_queued("t1") == 0  # this host took it


async def test_a_host_that_reads_at_once_and_leaves_keeps_its_messages(served: Served) -> None:
    """A client that reads the answer and closes straight away (the shim does) took it: the
    bridge asks its own descriptor of the socket, and gives nothing back."""

    def read_and_leave(port: int, path: str) -> bytes:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer laptop-secret\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            sock.settimeout(10)
            got = b""
            while b"wake up" not in got:
                chunk = sock.recv(65536)
                assert chunk, got
                got += chunk
            return got

    served.waiter.taken_within = 1.0
    await served.env.hook("Stop")
    await served.env.say("wake up")
    assert served.server.port is not None
    path = WAIT_PATH.format(session_id="T1") + "?timeout=30&since=1"
    got = await asyncio.to_thread(read_and_leave, served.server.port, path)
    assert got.startswith(b"HTTP/1.1 200")
    await until(lambda: served.waiter.connections.held == 0, timeout=20)
    assert await served.env.inbox.count_queued("t1") == 0
