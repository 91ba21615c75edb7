"""A scripted stand-in for the Anthropic Messages API, for running the real Claude Code CLI here.

The model is the one part of a Claude Code session this machine cannot reach. Everything else in
the tests that use this is real: the ``claude`` binary from npm, its hooks as ``install-hooks``
writes them, the bridge, Synapse. The CLI is pointed here with ``ANTHROPIC_BASE_URL``.

The script answers by what the newest turn holds, so a test steers the "model" through its
prompt:

- a turn that ends with a tool result: a short text reply;
- ``RUN: <command>``: a ``Bash`` tool call running ``<command>``;
- ``READ: <path>``: a ``Read`` tool call of ``<path>``;
- a bridge line announcing an operator's file (``… via Matrix: attached <name> (<type>, <size>):
  <path>``): a ``Read`` tool call of ``<path>``, as Claude looks at what it was sent;
- ``CALL: <tool>``: a call of the tool named ``<tool>`` (an MCP tool: ``mcp__<server>__<tool>``)
  without arguments;
- anything else: a text reply naming what the turn ended with, so a test can tell a plain reply
  from one that answers a Stop hook's feedback;
- ``HOLD`` anywhere in the turn: the answer waits until the test calls :meth:`release` (so a
  test can act while the session is mid-turn);
- ``DRIP`` anywhere in the turn: a long streamed answer, a few words every 0.1 s, until the test
  calls :meth:`release` or the client goes away (:attr:`dropped` is set then: an interrupt).

Every request body is kept in :attr:`requests` for assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from typing import Any

from aiohttp import web

from claude_bridge.devenv.synapse import free_port

RUN = re.compile(r"RUN: (.+?)(?:\\n|\"|$)")
READ = re.compile(r"READ: (.+?)(?:\\n|\"|$)")
CALL = re.compile(r"CALL: ([\w-]+)")
ATTACHED = re.compile(r"via Matrix: attached \S+ \([^)]*\): (/[^\\\"]+)")
TOOL_REPLY = "The command ran."
PLAIN_REPLY = "Noted."
FEEDBACK_REPLY = "Carrying on with what the hook said."


def _newest(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages after the model's last one: the user's text, tool results, and the
    system-role messages Claude Code adds (hooks' additional context among them)."""
    turn: list[dict[str, Any]] = []
    for message in body.get("messages", []):
        turn = [] if message.get("role") == "assistant" else [*turn, message]
    return turn


def newest_turn(body: dict[str, Any]) -> str:
    """The newest turn as one string."""
    return json.dumps([message.get("content") for message in _newest(body)])


def _ends_with_tool_result(body: dict[str, Any]) -> bool:
    """Whether the user's newest block is a tool result (after a resume, Claude Code sends the
    previous turn's last tool result and the new prompt in one message: that is a prompt)."""
    blocks = [
        block
        for message in _newest(body)
        if message.get("role") == "user" and isinstance(message.get("content"), list)
        for block in message["content"]
    ]
    return bool(blocks) and blocks[-1].get("type") == "tool_result"


class FakeAnthropic:
    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[dict[str, Any]] = []
        self.holding = asyncio.Event()
        self.dropped = asyncio.Event()
        self._released = asyncio.Event()
        self._tool_ids = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def release(self) -> None:
        self._released.set()

    def turns(self) -> list[str]:
        """The newest turn of every request, in order."""
        return [newest_turn(r) for r in self.requests]

    async def _count_tokens(self, _: web.Request) -> web.Response:
        return web.json_response({"input_tokens": 100})

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        turn = newest_turn(body)
        if "HOLD" in turn and not self._released.is_set():
            self.holding.set()
            await self._released.wait()
        if "DRIP" in turn and body.get("stream") and not self._released.is_set():
            return await self._drip(request, body)
        blocks, stop_reason = self._answer(turn, _ends_with_tool_result(body))
        if body.get("stream"):
            return await self._stream(request, body, blocks, stop_reason)
        return web.json_response(_message(body, blocks, stop_reason))

    async def _drip(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        start = _message(body, [], None)
        opened = {"index": 0, "content_block": {"type": "text", "text": ""}}
        try:
            await response.write(_sse("message_start", {"type": "message_start", "message": start}))
            await response.write(
                _sse("content_block_start", {"type": "content_block_start", **opened})
            )
            self.holding.set()
            while not self._released.is_set():
                delta = {"index": 0, "delta": {"type": "text_delta", "text": "still going… "}}
                await response.write(
                    _sse("content_block_delta", {"type": "content_block_delta", **delta})
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._released.wait(), 0.1)
            for name, data in (
                ("content_block_stop", {"index": 0}),
                (
                    "message_delta",
                    {
                        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": {"output_tokens": 12},
                    },
                ),
                ("message_stop", {}),
            ):
                await response.write(_sse(name, {"type": name, **data}))
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.dropped.set()
            raise
        return response

    def _answer(self, turn: str, tool_result: bool) -> tuple[list[dict[str, Any]], str]:
        if tool_result:
            return [{"type": "text", "text": TOOL_REPLY}], "end_turn"
        if match := RUN.search(turn):
            command = match.group(1).strip()
            return self._call(
                "Bash", {"command": command, "description": "Run what the test asked for"}
            )
        if match := READ.search(turn):
            return self._call("Read", {"file_path": match.group(1).strip()})
        if match := ATTACHED.search(turn):
            return self._call("Read", {"file_path": match.group(1).strip()})
        if match := CALL.search(turn):
            return self._call(match.group(1), {})
        text = FEEDBACK_REPLY if "Stop hook feedback" in turn else PLAIN_REPLY
        return [{"type": "text", "text": text}], "end_turn"

    def _call(self, name: str, tool_input: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        self._tool_ids += 1
        tool = {"type": "tool_use", "id": f"toolu_{self._tool_ids:04d}", "name": name}
        return [{**tool, "input": tool_input}], "tool_use"

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        blocks: list[dict[str, Any]],
        stop_reason: str,
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        start = _message(body, [], None)
        await response.write(_sse("message_start", {"type": "message_start", "message": start}))
        for index, block in enumerate(blocks):
            opened: dict[str, Any]
            if block["type"] == "text":
                opened = {"type": "text", "text": ""}
                delta = {"type": "text_delta", "text": block["text"]}
            else:
                opened = {**block, "input": {}}
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            for name, data in (
                ("content_block_start", {"index": index, "content_block": opened}),
                ("content_block_delta", {"index": index, "delta": delta}),
                ("content_block_stop", {"index": index}),
            ):
                await response.write(_sse(name, {"type": name, **data}))
        ending = {"stop_reason": stop_reason, "stop_sequence": None}
        usage = {"output_tokens": 12}
        await response.write(
            _sse("message_delta", {"type": "message_delta", "delta": ending, "usage": usage})
        )
        await response.write(_sse("message_stop", {"type": "message_stop"}))
        await response.write_eof()
        return response


def _message(
    body: dict[str, Any], blocks: list[dict[str, Any]], stop_reason: str | None
) -> dict[str, Any]:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "claude-fake"),
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 100, "output_tokens": 12},
    }


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
