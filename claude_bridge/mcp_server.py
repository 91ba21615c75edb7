"""``claude-bridge mcp``: MCP tools over stdio that let a Claude Code session see and talk to the
other sessions the bridge mirrors.

It is a thin client of the bridge's REST API (``openapi.yaml``), configured from its environment:
``CLAUDE_BRIDGE_URL`` and ``CLAUDE_BRIDGE_TOKEN`` (the hook server and a hook token, as for the
hooks), and the calling session from ``CLAUDE_CODE_SESSION_ID``, which Claude Code sets for the
stdio MCP servers it starts (``CLAUDE_BRIDGE_SESSION_ID`` overrides it). Add it with::

    claude mcp add --scope user --env CLAUDE_BRIDGE_URL=… --env CLAUDE_BRIDGE_TOKEN=… \\
        claude-bridge -- claude-bridge mcp

Nothing but the protocol may go to stdout; logs go to stderr.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import Annotated, Any

import aiohttp
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from claude_bridge import __version__
from claude_bridge.control import framing
from claude_bridge.ids import thread_id_for

DEFAULT_URL = "http://127.0.0.1:29341"
INSTRUCTIONS = (
    "claude-bridge mirrors every Claude Code session into a Matrix room (a 'thread'). These tools "
    "list the other sessions, read what happened in them (including what people wrote in the "
    "room), and post into another session's room as this session, e.g. to hand work over."
)


class BridgeAPI:
    """The REST API as the tools use it; failures become ``ToolError`` with the bridge's words."""

    def __init__(self, url: str, token: str, session_id: str | None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.session_id = session_id
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    @property
    def own_thread(self) -> str | None:
        return thread_id_for(self.session_id) if self.session_id else None

    async def call(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.session_id:
            headers["X-Claude-Session-Id"] = self.session_id
        query = {k: str(v) for k, v in (params or {}).items() if v not in (None, "")}
        try:
            async with aiohttp.ClientSession(timeout=self.timeout) as http:
                async with http.request(
                    method, self.url + path, params=query, json=json, headers=headers
                ) as resp:
                    body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise ToolError(f"the bridge at {self.url} did not answer: {e!r}") from None
        if resp.status >= 400:
            error = body.get("error") if isinstance(body, dict) else None
            raise ToolError(f"bridge answered {resp.status}: {error or body}")
        return body if isinstance(body, dict) else {}


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime((ms or 0) / 1000))


def format_threads(body: dict[str, Any], own: str | None) -> str:
    threads = body.get("threads") or []
    if not threads:
        return "No threads match."
    lines = [f"{len(threads)} thread(s), most recently active first:"]
    for t in threads:
        mine = " (this session)" if t["id"] == own else ""
        title = f' "{t["title"]}"' if t.get("title") else ""
        # One line per thread, whatever its title or path holds (framing.name).
        lines.append(
            framing.name(
                f"- {t['id']}{mine} · {t.get('project') or '?'} · {t['status']}{title} · "
                f"{t.get('project_path') or ''} · last activity {_when(t.get('updated_at'))}"
            )
        )
    if body.get("next_offset") is not None:
        lines.append(f"More: call again with offset={body['next_offset']}.")
    return "\n".join(lines)


def format_messages(body: dict[str, Any]) -> str:
    thread = body.get("thread") or {}
    lines = [
        framing.name(
            f"Thread {thread.get('id')} · {thread.get('project') or '?'} · "
            f"{thread.get('status')} · room {thread.get('alias')}"
        )
    ]
    names = {"user": "prompt", "assistant": "claude", "tool": "tool", "system": "·"}
    for m in body.get("messages") or []:
        # Each text quoted under who wrote it (framing): no line of it passes for a new message.
        who = m["sender"] if m["role"] == "matrix" else names.get(m["role"], m["role"])
        lines.append(f"[{_when(m['ts'])}] {framing.name(who)}:\n{framing.quote(m['text'])}")
    if len(lines) == 1:
        lines.append("(no messages yet)")
    if body.get("next_before"):
        lines.append(f'Older messages: call again with before="{body["next_before"]}".')
    return "\n".join(lines)


def build_server(api: BridgeAPI) -> MCPServer:
    server: MCPServer = MCPServer("claude-bridge", version=__version__, instructions=INSTRUCTIONS)

    @server.tool()
    async def claude_list_threads(
        project: Annotated[
            str | None, Field(description="Part of the project name or path.")
        ] = None,
        status: Annotated[str | None, Field(description="'active' or 'ended'.")] = None,
        text: Annotated[
            str | None, Field(description="Part of the title, project, path or session id.")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
        offset: Annotated[int, Field(ge=0)] = 0,
    ) -> str:
        """List Claude Code sessions mirrored to Matrix, most recently active first."""
        body = await api.call(
            "GET",
            "/claude/v1/threads",
            params={
                "project": project,
                "status": status,
                "q": text,
                "limit": limit,
                "offset": offset,
            },
        )
        return format_threads(body, api.own_thread)

    @server.tool()
    async def claude_read_thread(
        thread_id: Annotated[str, Field(description="A thread id or session id.")],
        limit: Annotated[int, Field(ge=1, le=200)] = 30,
        before: Annotated[
            str | None, Field(description="The cursor an earlier call returned, to page back.")
        ] = None,
    ) -> str:
        """Read the recent messages of a thread: prompts, Claude's replies, tool calls, and what
        people wrote in its Matrix room. Pass the returned `before` value to page back."""
        body = await api.call(
            "GET",
            f"/claude/v1/threads/{thread_id_for(thread_id.strip())}/messages",
            params={"limit": limit, "before": before},
        )
        return format_messages(body)

    @server.tool()
    async def claude_send_to_thread(
        thread_id: Annotated[str, Field(description="The thread (or session) to post into.")],
        text: Annotated[str, Field(min_length=1, max_length=20000, description="Markdown.")],
    ) -> str:
        """Post a message (Markdown) into another session's Matrix room as this session, e.g. to
        hand work over or ask a question. The people in that room see it; it reaches that
        session's Claude, marked as coming from this session's Claude, once an operator there
        lets it through (unless the bridge lets hand-offs between sessions of one host through
        directly)."""
        if not api.session_id:
            raise ToolError(
                "this MCP server does not know its session: CLAUDE_CODE_SESSION_ID is not set "
                "(set CLAUDE_BRIDGE_SESSION_ID to the session id)"
            )
        body = await api.call(
            "POST",
            f"/claude/v1/threads/{thread_id_for(thread_id.strip())}/messages",
            json={"text": text},
        )
        posted = (
            f"Posted to thread {body['thread_id']} as {body['sender']} (event {body['event_id']})"
        )
        if body.get("delivery") == "proposed":
            return f"{posted}. It reaches that session's Claude once an operator there approves it."
        if body.get("delivery") == "direct":
            return f"{posted}. It goes to that session's Claude with its next hook answer."
        return f"{posted}."

    return server


def api_from_env(environ: Mapping[str, str], url: str | None = None) -> BridgeAPI:
    token = environ.get("CLAUDE_BRIDGE_TOKEN", "")
    if not token:
        raise SystemExit("claude-bridge mcp: set CLAUDE_BRIDGE_TOKEN to a hook token")
    session = environ.get("CLAUDE_BRIDGE_SESSION_ID") or environ.get("CLAUDE_CODE_SESSION_ID")
    return BridgeAPI(url or environ.get("CLAUDE_BRIDGE_URL") or DEFAULT_URL, token, session)


def run(url: str | None = None) -> int:
    server = build_server(api_from_env(os.environ, url))
    asyncio.run(server.run_stdio_async())
    return 0
