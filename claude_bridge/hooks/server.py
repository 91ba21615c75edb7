"""The hook-ingest HTTP server (Claude Code → bridge): ``POST /claude/v1/hooks``.

What it answers, status by status, is the contract in ``openapi.yaml`` (``postHookEvent``);
``tests/e2e/test_openapi.py`` holds this server to it. In short: 200 only once the event is
committed (the body is the hook output), a clear ``{"error": …}`` otherwise, and an
``Idempotency-Key`` the thread already stored answers 200 without storing the event again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from claude_bridge import metrics
from claude_bridge.collector import ACTIVITY
from claude_bridge.config import HooksConfig
from claude_bridge.events.models import HookEvent, PermissionRequest
from claude_bridge.events.parse import HookInputError, parse_hook_event
from claude_bridge.hooks.call import HookCall
from claude_bridge.hooks.caps import HeldApprovals, HeldLimit, ThreadCapReached
from claude_bridge.hooks.held import RETRY_AFTER, HeldConnections, NoSlot
from claude_bridge.hooks.ingest import Ingest, SessionRejected
from claude_bridge.hooks.limits import NewThreadLimit
from claude_bridge.hooks.receipt import TAKEN_WITHIN, answer_taken
from claude_bridge.hooks.validate import MAX_JSON_DEPTH, BadBody, read_json_object, unstorable
from claude_bridge.host_files import FILES_HEADER
from claude_bridge.ids import IDEMPOTENCY_HEADER, IDEMPOTENCY_KEY
from claude_bridge.log import get_logger
from claude_bridge.render.scrub import Scrubber
from claude_bridge.shim import SPOOLED_HEADER
from claude_bridge.store import Thread
from claude_bridge.token_access import TokenAccess

log = get_logger("hooks")

HookAnswerer = Callable[[HookEvent, Thread, HookCall], Awaitable[dict[str, Any]]]
"""What gives a stored hook event its answer body: steering's ``control.responder.Responder``."""
HealthProbe = Callable[[], Awaitable[dict[str, Any]]]


async def _no_answer(_: HookEvent, __: Thread, ___: HookCall) -> dict[str, Any]:
    return {}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


class HookServer:
    def __init__(
        self,
        config: HooksConfig,
        ingest: Ingest,
        *,
        respond: HookAnswerer = _no_answer,
        health: HealthProbe | None = None,
        access: TokenAccess | None = None,
        scrub: Scrubber | None = None,
    ) -> None:
        self.config = config
        # Checks session ids, which become Matrix ids that are never scrubbed.
        self.scrub = scrub
        self.access = access or TokenAccess(config)
        self.held = HeldApprovals(
            lambda name: t.max_held_approvals if (t := self.access.settings(name)) else 0
        )
        # Long-polls, held approvals and held Stop hooks, against the file-descriptor limit.
        self.connections = HeldConnections(config.max_held_connections)
        self.taken_within = TAKEN_WITHIN
        self.ingest = ingest
        self.respond = respond
        self.health = health
        # The metrics time every hook request, the ones refused before they parsed too.
        self.app = web.Application(
            client_max_size=config.max_body_bytes, middlewares=[metrics.hook_metrics_middleware]
        )
        self.app.router.add_post("/claude/v1/hooks", self.handle_hook)
        self.app.router.add_get("/health", self.handle_health)
        self._runner: web.AppRunner | None = None

    def token_name(self, request: web.Request) -> str | None:
        return self.access.identify(request.headers.get("Authorization", ""))

    async def handle_hook(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        token_name = self.token_name(request)
        if token_name is None:
            return _error(401, "missing or unknown hook token (Authorization: Bearer <token>)")
        # The collector's long pauses wait for a quiet moment; a stranger's requests can't
        # keep the bridge from having one.
        ACTIVITY.note()
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is not None and not IDEMPOTENCY_KEY.match(key):
            return _error(400, f"{IDEMPOTENCY_HEADER} must match {IDEMPOTENCY_KEY.pattern}")
        try:
            text, data = await read_json_object(
                request,
                self.config.max_body_bytes,
                "hook input",
                deep=f"JSON nested too deeply (more than {MAX_JSON_DEPTH} levels)",
            )
        except BadBody as e:
            return _error(e.status, e.message)
        try:
            event = parse_hook_event(data)
            request[metrics.HOOK_EVENT_NAME] = event.hook_event_name
        except HookInputError as e:
            return _error(422, f"not a valid hook input: {e}")
        if problem := unstorable(event, self.scrub):
            return _error(422, f"not a valid hook input: {problem}")
        # A permission request holds its connection until someone decides: capped per token.
        holds = isinstance(event, PermissionRequest) and SPOOLED_HEADER not in request.headers
        if holds:
            try:
                self.held.take(token_name)
            except HeldLimit as e:
                return _error(429, str(e), headers={"Retry-After": str(HeldLimit.RETRY_AFTER)})
            try:
                self.connections.take()
            except NoSlot as e:
                self.held.give_back(token_name)
                return _error(503, str(e), headers={"Retry-After": str(RETRY_AFTER)})
        try:
            return await self._accept(request, event, text, token_name, key, started)
        finally:
            if holds:
                self.held.give_back(token_name)
                self.connections.give_back()

    async def _accept(
        self,
        request: web.Request,
        event: HookEvent,
        text: str,
        token_name: str,
        key: str | None,
        started: float,
    ) -> web.Response:
        try:
            thread, event_id = await self.ingest.accept(
                event, text, token_name, replay=request.headers.get(SPOOLED_HEADER), key=key
            )
        except NewThreadLimit as e:
            retry = str(max(1, math.ceil(e.retry_after)))
            return _error(429, str(e), headers={"Retry-After": retry})
        except ThreadCapReached as e:
            return _error(403, str(e))
        except SessionRejected as e:
            return _error(e.status, str(e))
        except Exception as e:
            log.warning("could not store hook event", error=repr(e), session_id=event.session_id)
            return _error(503, "the bridge cannot store events right now; retry later")
        call = HookCall(
            event_id,
            token_name,
            replayed=SPOOLED_HEADER in request.headers,
            connected=self.connections.check(request),
            files_root=request.headers.get(FILES_HEADER),
            local=self.access.is_local(token_name),
        )
        answer = await self.respond(event, thread, call)
        log.debug(
            "hook accepted",
            hook_event=event_id,
            hook_event_name=event.hook_event_name,
            thread_id=thread.id,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
        response = web.json_response(answer)
        # An answer that carries an operator's messages is theirs only once Claude Code's host
        # has it; otherwise they go back to the queue (receipt.py).
        await answer_taken(request, response, call.untaken, self.taken_within)
        return response

    async def handle_health(self, _: web.Request) -> web.Response:
        report = await self.health() if self.health else {"live": True, "ready": True}
        return web.json_response(report, status=200 if report.get("ready") else 503)

    async def start(self) -> None:
        self.connections.start()
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        self.connections.hangups.install(self._runner.server)
        await web.TCPSite(self._runner, self.config.host, self.config.port).start()
        log.info("hook server listening", listen=self.config.listen)

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
            self._runner = None
