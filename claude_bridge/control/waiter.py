"""``GET /claude/v1/sessions/{session_id}/wait``: the background waiter's long-poll.

``claude-bridge-hook wait`` runs as an ``asyncRewake`` Stop hook: Claude Code starts it when a
turn ends and does not wait for it. It long-polls here; when an operator writes while the session
sits idle, the answer carries the messages and the hook exits 2, which wakes the session with
them. Answers (bearer token as for hooks; only the token that owns the session may wait on it):

======  =====================================================================================
200     ``{"messages": [...], "text": "…"}``: claimed for this waiter, print and exit 2
204     nothing within ``timeout`` (or the bridge is stopping): poll again
401     missing or unknown token
403     the token does not own this session
404     no such session
410     a newer waiter of this session took over (``since`` older than its): exit quietly
503     every held-connection slot is taken (``hooks.max_held_connections`` or the file-
        descriptor limit, ``hooks/held.py``): poll again after ``Retry-After`` seconds (also
        ``retry_after`` in the body, which the shim reads)
======  =====================================================================================

While the session is busy (it had a hook event within ``idle_after`` and did not end its turn)
or a Stop hook is held in listen mode, messages are left to those hook answers instead.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from claude_bridge import host_files
from claude_bridge.config.sections.control import ControlConfig
from claude_bridge.control.file_carrier import Carrier, FileCarrier, with_files
from claude_bridge.control.messages import MessageQueue, compose
from claude_bridge.control.owned import error as _error
from claude_bridge.control.owned import owned_session
from claude_bridge.control.responder import Responder
from claude_bridge.control.signals import Signals, thread_key
from claude_bridge.hooks.held import RETRY_AFTER, HeldConnections, NoSlot
from claude_bridge.hooks.receipt import TAKEN_WITHIN, answer_taken
from claude_bridge.host_files import FILES_HEADER
from claude_bridge.log import get_logger
from claude_bridge.store import ThreadStore

log = get_logger("waiter")

WAIT_PATH = "/claude/v1/sessions/{session_id}/wait"
BUSY_RECHECK = 1.0
OWNERS_KEPT = 100_000


class Waiter:
    def __init__(
        self,
        options: ControlConfig,
        threads: ThreadStore,
        queue: MessageQueue,
        responder: Responder,
        signals: Signals,
        token_name: Callable[[web.Request], str | None],
        on_delivered: Callable[[], None],
        connections: HeldConnections | None = None,
        is_local: Callable[[str | None], bool] = lambda _: False,
        runner_typed: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self.options = options
        self.threads = threads
        self.queue = queue
        self.responder = responder
        self.signals = signals
        self.token_name = token_name
        self.on_delivered = on_delivered
        self.connections = connections or HeldConnections()
        self.is_local = is_local
        # A runner session's message is typed into its pane instead (``runner_typing``).
        self.runner_typed = runner_typed
        self._newest: dict[str, int] = {}
        self._polling: dict[str, int] = {}
        # session id → (thread id, session id, owning token) of waiters let in: a waiter polls
        # again every few minutes, and 10,000 of them reading the thread row each time was
        # most of an idle bridge's CPU. A thread's id and session id never change, and its
        # owner only when a renamed token's threads move to the new name, at start-up
        # (``ownership.settle_owners``), before the first poll. Another token still goes to the
        # database, and gets its 403.
        self._owned: dict[str, tuple[str, str, str]] = {}
        self.taken_within = TAKEN_WITHIN
        """How long the waiter's host has to acknowledge an answer with messages, or they go
        back to the queue (``hooks/receipt.py``)."""

    def waiting(self, thread_id: str) -> bool:
        """Whether a waiter of the thread is long-polling right now."""
        return self._polling.get(thread_id, 0) > 0

    def polled(self, thread_id: str) -> bool:
        """Whether a waiter of the thread has polled since the bridge started."""
        return thread_id in self._newest

    async def handle(self, request: web.Request) -> web.StreamResponse:
        token = self.token_name(request)
        session = request.match_info["session_id"]
        known = self._owned.get(session)
        if token is not None and known is not None and known[2] == token:
            thread_id, session_id = known[0], known[1]
        else:
            thread = await owned_session(request, token, self.threads, "wait for its messages")
            if isinstance(thread, web.Response):
                return thread
            thread_id, session_id = thread.id, thread.session_id
            if len(self._owned) >= OWNERS_KEPT:
                self._owned.clear()
            self._owned[session] = (thread_id, session_id, str(token))
        try:
            timeout = float(request.query.get("timeout", self.options.max_wait))
            since = int(request.query.get("since", "0"))
            if not math.isfinite(timeout):  # NaN would hold the poll until the client leaves
                raise ValueError(timeout)
        except ValueError:
            return _error(400, "timeout and since must be (finite) numbers")
        timeout = min(timeout, self.options.max_wait)
        if since < self._newest.get(thread_id, 0):
            return _error(410, "a newer waiter of this session took over")
        if since > self._newest.get(thread_id, 0):
            self._newest[thread_id] = since
            self.signals.fire(thread_key(thread_id))  # an older waiter's poll ends now

        connected = self.connections.check(request)

        try:
            self.connections.take()
        except NoSlot as e:  # the shim waits ``retry_after`` and polls again (not a failure)
            return web.json_response(
                {"error": str(e), "retry_after": RETRY_AFTER},
                status=503,
                headers={"Retry-After": str(RETRY_AFTER)},
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        carrier = self.queue.files.carrier(
            session_id, request.headers.get(FILES_HEADER), self.is_local(token)
        )
        self._polling[thread_id] = self._polling.get(thread_id, 0) + 1
        try:
            return await self._poll(request, thread_id, since, deadline, connected, carrier)
        finally:
            self.connections.give_back()
            self._polling[thread_id] -= 1
            if not self._polling[thread_id]:
                del self._polling[thread_id]

    async def _poll(
        self,
        request: web.Request,
        thread_id: str,
        since: int,
        deadline: float,
        connected: Callable[[], bool],
        carrier: Carrier,
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        with self.signals.listen(thread_key(thread_id)) as wake:
            while not self.signals.closed:
                if since < self._newest.get(thread_id, 0):
                    return _error(410, "a newer waiter of this session took over")
                if carrier.root is not None and (
                    offered := self.responder.offer_requests(thread_id)
                ):
                    body = {"messages": [], "text": "", host_files.REQUESTS_KEY: offered}
                    return web.json_response(body)  # ``!claude file``: the host reads it
                queued = await self.queue.inbox.count_queued(thread_id)
                if (
                    queued
                    and self.responder.idle(thread_id)
                    and self.runner_typed is not None
                    and await self.runner_typed(thread_id)
                ):
                    queued = 0  # the runner has it: nothing for this waiter now
                if queued and self.responder.idle(thread_id):
                    messages = await self.queue.take(
                        thread_id,
                        via="waiter",
                        hook_event_id=None,
                        connected=connected,
                        carrier=carrier,
                    )
                    if messages:
                        log.info(
                            "waiter woke the session", thread_id=thread_id, count=len(messages)
                        )
                        self.on_delivered()
                        body = _body(messages, self.options.message_budget)
                        response = web.json_response(
                            with_files(body, FileCarrier.to_fetch(messages, carrier))
                        )
                        take_back = self.responder.take_back(thread_id, "waiter", messages)
                        await answer_taken(request, response, [take_back], self.taken_within)
                        return response
                until = min(deadline, loop.time() + BUSY_RECHECK) if queued else deadline
                if not await self.signals.wait(wake, until, connected, idle=True) and (
                    loop.time() >= deadline or not connected()
                ):
                    break
        return web.Response(status=204)


def _body(messages: list[Any], budget: int) -> dict[str, Any]:
    return {
        "messages": [
            {"event_id": m.event_id, "sender": m.sender, "body": m.body} for m in messages
        ],
        "text": compose(messages, budget),
    }
