"""Checks on a hook body beyond its model: what would break a later step, refused up front.

Each is a client error (4xx): retrying cannot help, and the shim would otherwise keep a 5xx'd
event in its spool, in front of every later one, for ever.
"""

from __future__ import annotations

import json
import math
from typing import Any

from aiohttp import web

from claude_bridge.config.sections.mirror import RedactConfig
from claude_bridge.events.models import HookEvent
from claude_bridge.render.scrub import Scrubber, scrubber_for

_SCRUB = scrubber_for(RedactConfig())

MAX_JSON_DEPTH = 64
"""Real hook inputs nest a few levels; far deeper JSON would only strain every later step."""


def not_json(literal: str) -> Any:
    raise ValueError(f"{literal} is not JSON")


def finite(literal: str) -> float:
    # Python reads NaN, Infinity and 1e999; nothing downstream (Postgres JSON, Matrix) would.
    value = float(literal)
    if math.isinf(value):
        raise ValueError(f"number {literal[:40]} is not finite")
    return value


_decode = json.JSONDecoder(parse_constant=not_json, parse_float=finite).decode
"""Built once: json.loads with options builds a decoder per call."""


class BadJSON(ValueError):
    """Why a body is not the JSON the bridge takes (a 400)."""


def decode_json(raw: bytes) -> tuple[str, Any]:
    """The body as text and as JSON (standard JSON only: no NaN, no infinite numbers), or
    :class:`BadJSON` saying why not."""
    try:
        text = raw.decode("utf-8")
        return text, _decode(text)
    except UnicodeDecodeError:
        raise BadJSON("body is not valid UTF-8") from None
    except RecursionError:
        raise BadJSON("JSON nested too deeply") from None
    except ValueError as e:
        raise BadJSON(f"body is not valid JSON: {e}") from None


def too_deep(data: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                return True
            children = value.values() if isinstance(value, dict) else value
            stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


class BadBody(Exception):
    """A request body refused before it is looked at: the HTTP status and the error text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_json_object(
    request: web.Request, limit: int, what: str, deep: str = "JSON nested too deeply"
) -> tuple[str, dict[str, Any]]:
    """The request's body as text and as a JSON object, or :class:`BadBody`: 413 past ``limit``
    bytes (by its ``Content-Length``, or while reading), 400 if it cannot be read, is not JSON
    (:func:`decode_json`), is not an object (``what`` names it) or nests deeper than
    :data:`MAX_JSON_DEPTH` (``deep`` says so). The hook server and the runner poll share it."""
    too_large = BadBody(413, f"body larger than {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    raw = bytearray()
    while True:  # read(n) answers what has arrived, at most n: read to the end, or past limit
        try:
            chunk = await request.content.read(limit + 1 - len(raw))
        except Exception:
            raise BadBody(400, "could not read the body") from None
        if not chunk:
            break
        raw += chunk
        if len(raw) > limit:
            raise too_large
    try:
        text, data = decode_json(bytes(raw))
    except BadJSON as e:
        raise BadBody(400, str(e)) from None
    if not isinstance(data, dict):
        raise BadBody(400, f"{what} must be a JSON object, not {type(data).__name__}")
    if too_deep(data):
        raise BadBody(400, deep)
    return text, data


def unstorable(event: HookEvent, scrub: Scrubber | None = None) -> str | None:
    """A field that goes into a database column but cannot (Postgres refuses NUL and surrogates).

    Refused as 422, not 503: a retry cannot succeed, and the shim would spool it for ever.
    ``scrub`` is the bridge's outgoing scrubber (configured patterns and its own secrets); the
    default knows only the built-in patterns.
    """
    for name in ("session_id", "hook_event_name", "cwd"):
        value = getattr(event, name)
        if value is None:
            continue
        if "\x00" in value:
            return f"{name}: contains a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{name}: contains a lone surrogate"
    # The session id becomes the ghost's user id and the room alias, which are never scrubbed
    # (rewriting them would break the room): one the scrubber would change at all is refused.
    # (Looking for the replacement in the result alone let "[redacted]<token>" through.)
    if (scrub or _SCRUB).text(event.session_id) != event.session_id:
        return "session_id: looks like it holds a secret (session ids are UUIDs)"
    return None
