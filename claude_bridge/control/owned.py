"""The routes only a session's own hook token may use (the waiter, a session's files)."""

from __future__ import annotations

from aiohttp import web

from claude_bridge.store import Thread, ThreadStore


async def owned_session(
    request: web.Request, token: str | None, threads: ThreadStore, what: str
) -> Thread | web.Response:
    """The thread of the request's ``session_id`` if ``token`` owns it; else the error answer
    (401 no token, 404 no session, 403 another token's: no role widens this)."""
    if token is None:
        return error(401, "missing or unknown hook token (Authorization: Bearer <token>)")
    thread = await threads.for_session(request.match_info["session_id"])
    if thread is None:
        return error(404, "no such session")
    if thread.token_name != token:
        return error(
            403,
            f"session {thread.session_id!r} belongs to another hook token: only the token "
            f"that owns a session may {what}",
        )
    return thread


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)
