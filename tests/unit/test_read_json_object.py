"""``read_json_object``: the body reading the hook server and the runner poll share (their e2e
tests check the answers over HTTP; here, what only a slow or broken sender shows)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from aiohttp import web

from claude_bridge.hooks.validate import BadBody, read_json_object


@dataclass
class Content:
    chunks: list[bytes]
    broken: bool = False
    asked: list[int] = field(default_factory=list)

    async def read(self, n: int) -> bytes:
        """Like aiohttp's: what has arrived, at most ``n``; ``b""`` at the end."""
        self.asked.append(n)
        if not self.chunks:
            if self.broken:
                raise ConnectionResetError("Connection lost")
            return b""
        chunk, rest = self.chunks[0][:n], self.chunks[0][n:]
        self.chunks[0:1] = [rest] if rest else []
        return chunk


@dataclass
class Request:
    content: Content
    content_length: int | None = None


async def read(chunks: list[bytes], limit: int = 100, **kw: Any) -> tuple[str, dict[str, Any]]:
    request = Request(Content(chunks), **kw)
    return await read_json_object(cast(web.Request, request), limit, "the body")


async def refused(chunks: list[bytes], limit: int = 100, **kw: Any) -> tuple[int, str]:
    with pytest.raises(BadBody) as e:
        await read(chunks, limit, **kw)
    return e.value.status, e.value.message


async def test_a_body_that_arrives_in_pieces_is_read_whole() -> None:
    assert await read([b'{"a": ', b"[1, 2", b"]}"]) == ('{"a": [1, 2]}', {"a": [1, 2]})


async def test_too_large_by_its_length_or_while_reading_never_reads_past_the_limit() -> None:
    assert await refused([b"{}"], content_length=101) == (413, "body larger than 100 bytes")
    content = Content([b"x" * 60, b"x" * 60, b"x" * 60])
    with pytest.raises(BadBody) as e:
        await read_json_object(cast(web.Request, Request(content)), 100, "the body")
    assert (e.value.status, e.value.message) == (413, "body larger than 100 bytes")
    assert content.asked == [101, 41] and content.chunks == [b"x" * 19, b"x" * 60]


async def test_a_broken_body_not_json_not_an_object_or_too_deep_is_a_400() -> None:
    request = Request(Content([b'{"a"'], broken=True))
    with pytest.raises(BadBody) as e:
        await read_json_object(cast(web.Request, request), 100, "the body")
    assert (e.value.status, e.value.message) == (400, "could not read the body")
    assert await refused([b"\xff"]) == (400, "body is not valid UTF-8")
    assert (await refused([b"{"]))[0] == 400
    assert await refused([b"[]"]) == (400, "the body must be a JSON object, not list")
    deep = b'{"a": ' * 65 + b"1" + b"}" * 65
    assert await refused([deep], limit=1000) == (400, "JSON nested too deeply")
    request = Request(Content([deep]))
    with pytest.raises(BadBody) as e:
        await read_json_object(cast(web.Request, request), 1000, "the body", deep="too deep")
    assert e.value.message == "too deep"
    assert (await read([b'{"a": ' * 64 + b"1" + b"}" * 64], limit=1000))[1]["a"]
