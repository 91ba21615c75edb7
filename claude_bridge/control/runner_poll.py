"""``POST /claude/v1/runner/poll``: the host runner's long-poll (issue 15, ``openapi.yaml``).

======  =====================================================================================
200     ``{"jobs": [...]}``: every job of this runner without a result yet (maybe none)
400     the body is not JSON, or not an object
401     missing or unknown token
403     a ``shared`` token: it cannot own sessions, so it cannot run them
409     another runner instance holds this (token, host), or a newer poll of this one is open
413     body too large
422     the body breaks the rules (``runner_wire.py``), with what is wrong
503     the bridge is stopping, or cannot store right now
======  =====================================================================================
"""

from __future__ import annotations

from aiohttp import web

from claude_bridge.config import TokenRole
from claude_bridge.control.file_carrier import valid_root
from claude_bridge.control.runner_wire import (
    INSTANCE_HEADER,
    LEGACY_INSTANCE,
    WireError,
    parse_poll,
)
from claude_bridge.control.runners import Runners
from claude_bridge.hooks.validate import BadBody, read_json_object
from claude_bridge.host_files import FILES_HEADER
from claude_bridge.log import get_logger
from claude_bridge.token_access import TokenAccess

log = get_logger("runners")

POLL_PATH = "/claude/v1/runner/poll"
MAX_BODY = 1024 * 1024


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class RunnerPoll:
    def __init__(self, runners: Runners, access: TokenAccess) -> None:
        self.runners = runners
        self.access = access

    async def handle(self, request: web.Request) -> web.Response:
        token = self.access.identify(request.headers.get("Authorization", ""))
        if token is None:
            return _error(401, "missing or unknown hook token (Authorization: Bearer <token>)")
        if self.access.role(token) == TokenRole.SHARED:
            return _error(403, "a shared token owns no sessions, so it cannot run them")
        try:
            _, data = await read_json_object(request, MAX_BODY, "the poll body")
        except BadBody as e:
            return _error(e.status, e.message)
        try:
            poll = parse_poll(data)
        except WireError as e:
            return _error(422, f"not a valid runner poll: {e}")
        header = request.headers.get(FILES_HEADER)
        root = valid_root(header)
        if header is not None and root is None:
            return _error(422, f"{FILES_HEADER} must be an absolute path without . or ..")
        instance = request.headers.get(INSTANCE_HEADER, LEGACY_INSTANCE)
        if len(instance) > 128 or not instance.isascii() or not instance.isprintable():
            return _error(422, f"{INSTANCE_HEADER} must be at most 128 printable ASCII characters")

        def connected() -> bool:
            return not (request.transport is None or request.transport.is_closing())

        try:
            answer = await self.runners.poll(
                token, poll, connected, files_root=root, instance=instance
            )
        except Exception as e:
            log.warning("runner poll failed", error=repr(e), host=poll.host)
            return _error(503, "the bridge cannot store right now; poll again later")
        return web.json_response(answer.body, status=answer.status)
