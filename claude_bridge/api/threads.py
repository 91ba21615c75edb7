"""The threads API on the hook server, for the MCP tools (``claude-bridge mcp``) and scripts.

``GET /claude/v1/threads``, ``GET /claude/v1/threads/{id}``,
``GET /claude/v1/threads/{id}/messages`` and ``POST /claude/v1/threads/{id}/messages``, all with a
hook token (``Authorization: Bearer``). A POST speaks as the *calling* session's ghost, named by
``X-Claude-Session-Id`` (the MCP server sends the ``CLAUDE_CODE_SESSION_ID`` Claude Code gives it);
that session must already have a thread here, owned by the same hook token. Into another thread
it is a hand-off (``control/handoffs.py``): the answer's ``delivery`` says whether it waits for an
operator's ✅ there (``proposed``) or goes straight to that session's Claude (``direct``).
See ``openapi.yaml``.

A host token lists, reads and posts into only the threads it owns (403 for another's);
``shared`` and ``admin`` tokens see and post into all (:mod:`claude_bridge.token_access`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from claude_bridge.api.handoff_limits import HandoffLimits, HandoffRefused
from claude_bridge.config.sections.control import HandoffMode
from claude_bridge.config.sections.mirror import RedactConfig
from claude_bridge.control.handoffs import PROPOSAL, delivery
from claude_bridge.history import ThreadFilter, ThreadHistory
from claude_bridge.hooks.validate import BadBody, read_json_object
from claude_bridge.ids import IDEMPOTENCY_HEADER, IDEMPOTENCY_KEY
from claude_bridge.log import get_logger
from claude_bridge.matrix.client import MatrixClient, MatrixError
from claude_bridge.matrix.inbound_events import HANDOFF_FIELD
from claude_bridge.render.markdown import markdown_to_html
from claude_bridge.render.scrub import Scrubber, scrubber_for
from claude_bridge.router import ThreadRouter
from claude_bridge.store import Thread, ThreadStore
from claude_bridge.token_access import TokenAccess

log = get_logger("api")

SESSION_HEADER = "X-Claude-Session-Id"
MAX_TEXT = 20_000
MAX_BODY = 12 * MAX_TEXT + 1024
"""Bytes: the longest text with every character escaped (``\\uXXXX``, two for one past the
Basic Multilingual Plane), and room to spare."""
TOKEN_NAME = web.RequestKey("token_name", str)


class APIError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def thread_json(thread: Thread) -> dict[str, Any]:
    return {
        "id": thread.id,
        "session_id": thread.session_id,
        "room_id": thread.room_id,
        "alias": thread.alias,
        "ghost": thread.ghost_mxid,
        "project": thread.project_name,
        "project_path": thread.project_path,
        "title": thread.title,
        "status": thread.status,
        "created_at": thread.created_at,
        "updated_at": thread.updated_at,
    }


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise APIError(400, f"{name} must be an integer from {low} to {high}")
    return int(raw)


def _storable(text: str) -> bool:
    """Text a database column can hold: no NUL, valid UTF-8 (no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


class ThreadsAPI:
    def __init__(
        self,
        *,
        threads: ThreadStore,
        history: ThreadHistory,
        router: ThreadRouter,
        client: MatrixClient,
        access: TokenAccess,
        limits: HandoffLimits,
        scrub: Scrubber | None = None,
        handoffs: HandoffMode = "approve",
    ) -> None:
        self.handoffs = handoffs
        self.limits = limits
        self.threads = threads
        self.history = history
        self.router = router
        self.client = client
        self.access = access
        self.scrub = scrub or scrubber_for(RedactConfig())

    def authenticate(self, request: web.Request) -> str | None:
        return self.access.identify(request.headers.get("Authorization", ""))

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Auth and the ``{"error": …}`` contract for the API's routes only."""
        if not request.path.startswith("/claude/v1/threads"):
            return await handler(request)
        token_name = self.authenticate(request)
        if token_name is None:
            return web.json_response(
                {"error": "missing or unknown hook token (Authorization: Bearer <token>)"},
                status=401,
            )
        request[TOKEN_NAME] = token_name
        try:
            if not all(map(_storable, (request.path, *request.query.values()))):
                raise APIError(400, "NUL or lone surrogates in the path or query")
            return await handler(request)
        except APIError as e:
            return web.json_response({"error": str(e)}, status=e.status)
        except web.HTTPException as e:  # no such route or method: the same error contract
            if e.status < 400:
                raise
            allow = {"Allow": e.headers["Allow"]} if "Allow" in e.headers else None
            return web.json_response({"error": e.reason}, status=e.status, headers=allow)

    async def list_threads(self, request: web.Request) -> web.Response:
        limit = _int_param(request, "limit", 50, 1, 200)
        offset = _int_param(request, "offset", 0, 0, 10**9)
        q = request.query
        found = await self.history.list_threads(
            ThreadFilter(
                project=q.get("project") or None,
                status=q.get("status") or None,
                text=q.get("q") or None,
                limit=limit + 1,
                offset=offset,
                owner=None if self.access.sees_all(request[TOKEN_NAME]) else request[TOKEN_NAME],
            )
        )
        return web.json_response(
            {
                "threads": [thread_json(t) for t in found[:limit]],
                "next_offset": offset + limit if len(found) > limit else None,
            }
        )

    async def _thread(self, request: web.Request) -> Thread:
        """The path's thread, if this token may read it (and so hand off into it)."""
        thread = await self.threads.get(request.match_info["thread_id"])
        if thread is None:
            raise APIError(404, f"no thread {request.match_info['thread_id']!r}")
        if not self.access.may_read(request[TOKEN_NAME], thread.token_name):
            what = "post into" if request.method == "POST" else "read"
            raise APIError(403, self.access.refusal(thread.session_id, thread.token_name, what))
        return thread

    async def get_thread(self, request: web.Request) -> web.Response:
        return web.json_response(thread_json(await self._thread(request)))

    async def list_messages(self, request: web.Request) -> web.Response:
        thread = await self._thread(request)
        limit = _int_param(request, "limit", 50, 1, 200)
        try:
            messages, before = await self.history.messages(
                thread, limit=limit, before=request.query.get("before") or None
            )
        except ValueError as e:
            raise APIError(400, str(e)) from None
        return web.json_response(
            {
                "thread": thread_json(thread),
                "messages": [m.as_dict() for m in messages],
                "next_before": before,
            }
        )

    async def post_message(self, request: web.Request) -> web.Response:
        target = await self._thread(request)
        caller = await self._caller(request)
        text = await self._text(request)
        given = request.headers.get(IDEMPOTENCY_HEADER)
        key = given or uuid.uuid4().hex
        if not IDEMPOTENCY_KEY.match(key):
            raise APIError(400, f"{IDEMPOTENCY_HEADER} must match {IDEMPOTENCY_KEY.pattern}")
        how = "none" if caller.id == target.id else delivery(self.handoffs, caller, target)
        if how == "none":
            return await self._post(target, caller, text, key, how, lambda _: None)
        try:
            replay = f"{caller.id}.{target.id}.{key}" if given else None  # as the send's txn id
            admit = self.limits.admit(request[TOKEN_NAME], target, how == PROPOSAL, replay)
            async with admit as posted:
                return await self._post(target, caller, text, key, how, posted)
        except HandoffRefused as e:
            log.info("hand-off refused", thread_id=target.id, from_thread=caller.id, why=str(e))
            return web.json_response(
                {"error": str(e)}, status=429, headers={"Retry-After": str(e.retry_after)}
            )

    async def _post(
        self,
        target: Thread,
        caller: Thread,
        text: str,
        key: str,
        how: str,
        posted: Callable[[str], None],
    ) -> web.Response:
        content = {
            "msgtype": "m.text",
            "body": text,
            "format": "org.matrix.custom.html",
            "formatted_body": markdown_to_html(text),
            "m.mentions": {},
            HANDOFF_FIELD: caller.id,
        }
        try:
            room_id = await self.router.ensure_room(target)
            if caller.id != target.id:
                await self.router.ensure_member(
                    target, caller.ghost_mxid, self.router.displayname(caller)
                )
            event_id = await self.client.send_event(
                caller.ghost_mxid, room_id, "m.room.message", content, f"cb.api.{caller.id}.{key}"
            )
            posted(event_id)
        except MatrixError as e:
            log.warning("could not post for the API", thread_id=target.id, error=str(e))
            status = 503 if e.temporary else 502
            raise APIError(status, f"the homeserver refused or did not answer: {e}") from None
        log.info(
            "posted into another thread",
            thread_id=target.id,
            from_thread=caller.id,
            room_id=room_id,
        )
        return web.json_response(
            {
                "event_id": event_id,
                "room_id": room_id,
                "thread_id": target.id,
                "sender": caller.ghost_mxid,
                "delivery": how,
            },
            status=201,
        )

    async def _caller(self, request: web.Request) -> Thread:
        session_id = request.headers.get(SESSION_HEADER, "").strip()
        if not session_id:
            raise APIError(400, f"{SESSION_HEADER} (the calling Claude Code session) is required")
        caller = await self.threads.for_session(session_id)
        if caller is None or caller.session_id != session_id:
            raise APIError(
                403,
                f"session {session_id!r} has no thread here yet: its hooks must reach the bridge",
            )
        if caller.token_name != request[TOKEN_NAME]:  # a hand-off is signed by its own session
            raise APIError(403, f"session {session_id!r} belongs to another hook token")
        return caller

    async def _text(self, request: web.Request) -> str:
        try:
            _, body = await read_json_object(
                request,
                MAX_BODY,
                'body: {"text": "…"}',
                deep='body must be JSON: {"text": "…"}, not nested too deeply',
            )
        except BadBody as e:
            raise APIError(e.status, e.message) from None
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise APIError(422, "text: a non-empty string is required")
        if len(text) > MAX_TEXT:
            raise APIError(422, f"text: at most {MAX_TEXT} characters")
        if not _storable(text):
            raise APIError(422, "text: NUL characters and lone surrogates are not allowed")
        return text


_VERBATIM_PATHS = ("/claude/v1/hooks",)
"""Hook answers go back to the Claude Code session that asked, with the operators' words as
they wrote them; every other JSON answer of the hook server is scrubbed."""
_CURSOR_KEYS = frozenset({"cursor", "next_before"})


def scrub_responses(scrub: Scrubber) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The API's serialiser: every JSON answer (threads API, MCP reads, errors, ``/health``)
    leaves through the scrubber, whichever handler built it."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await handler(request)
        if (
            request.path in _VERBATIM_PATHS
            or not isinstance(response, web.Response)
            or not isinstance(response.body, bytes)  # before the header parse: a 204 has none
            or response.content_type != "application/json"
        ):
            return response
        response.body = json.dumps(_scrub_json(scrub, json.loads(response.body))).encode()
        return response

    return middleware


def _scrub_json(scrub: Scrubber, value: Any) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in _CURSOR_KEYS:  # the API's own base64, to be passed back unchanged
                out[key] = item
            elif isinstance(item, dict | list):
                out[key] = _scrub_json(scrub, item)
            else:
                out[key] = scrub.value(item, key)
        return out
    if isinstance(value, list):
        return [_scrub_json(scrub, v) for v in value]
    return scrub.value(value)


def register_routes(app: web.Application, api: ThreadsAPI) -> None:
    """Add the API's routes and middleware to the hook server's app (before it starts)."""
    app.middlewares.append(scrub_responses(api.scrub))
    app.middlewares.append(api.middleware)
    app.router.add_get("/claude/v1/threads", api.list_threads)
    app.router.add_get("/claude/v1/threads/{thread_id}", api.get_thread)
    app.router.add_get("/claude/v1/threads/{thread_id}/messages", api.list_messages)
    app.router.add_post("/claude/v1/threads/{thread_id}/messages", api.post_message)
