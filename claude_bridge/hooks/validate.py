"""Checks on a hook body beyond its model: what would break a later step, refused up front.

Each is a client error (4xx): retrying cannot help, and the shim would otherwise keep a 5xx'd
event in its spool, in front of every later one, for ever.
"""

from __future__ import annotations

import json
import math
from typing import Any

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
