"""What the bridge sends, checked against the Matrix specification's own JSON schemas.

The schemas are vendored under ``tests/matrix_spec`` (see its README: source, commit, licence)
and their ``$ref``s resolve there: nothing is fetched at test time. An event's content is wrapped
into a whole event (dummy ids) because the spec's schemas describe events, not bare content.
``m.room.message`` is checked against the generic schema and its msgtype's; relations, mentions
and an edit's ``m.new_content`` against theirs. The bridge's own ``org.claude_bridge.thread`` has
no spec schema: ``THREAD_STATE_SCHEMA`` below says what it must hold.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from ruamel.yaml import YAML

from claude_bridge.room_state import ACTIVITIES, THREAD_STATE

SPEC = Path(__file__).resolve().parent / "matrix_spec"
BASE = "https://spec.matrix.invalid/"  # never fetched: every URI under it maps to SPEC
EVENTS = "event-schemas/schema/"
MSGTYPES = ("m.text", "m.notice", "m.emote", "m.file")
CREATE_ROOM = (
    "api/client-server/create_room.yaml"
    "#/paths/~1createRoom/post/requestBody/content/application~1json/schema"
)

THREAD_STATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"const": THREAD_STATE},
        "state_key": {"const": ""},
        "content": {
            "type": "object",
            "required": ["session_id", "status", "activity"],
            "properties": {
                "session_id": {"type": "string", "minLength": 1},
                "project": {"type": "string"},
                "cwd": {"type": "string"},
                "status": {"enum": ["active", "ended"]},
                "activity": {"enum": list(ACTIVITIES)},
                "archived": {"const": True},
            },
        },
    },
}


def _vendored() -> list[tuple[str, Resource[Any]]]:
    yaml = YAML(typ="safe")
    return [
        (BASE + path.relative_to(SPEC).as_posix(), DRAFT202012.create_resource(yaml.load(path)))
        for path in sorted(SPEC.rglob("*.yaml"))
    ]


def _retrieve(uri: str) -> Resource[Any]:
    raise LookupError(f"not a vendored schema (nothing is fetched): {uri}")


# Every vendored file, loaded once; a $ref to anything else fails instead of going out.
REGISTRY: Registry[Any] = Registry(retrieve=_retrieve).with_resources(_vendored())  # type: ignore[call-arg]


@cache
def validator(ref: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": BASE + ref}, registry=REGISTRY)


def _errors(ref: str | dict[str, Any], instance: Any, where: str) -> list[str]:
    check = Draft202012Validator(ref) if isinstance(ref, dict) else validator(ref)
    return [
        f"{where}: {e.message} at {'/'.join(map(str, e.absolute_path)) or '(top)'}"
        for e in check.iter_errors(instance)
    ]


def event_problems(
    event_type: str, content: Any, state_key: str | None = None, *, where: str = ""
) -> list[str]:
    """Everything the spec's schemas find wrong with an event of this type and content."""
    where = where or event_type
    event: dict[str, Any] = {
        "type": event_type,
        "content": content,
        "event_id": "$event:localhost",
        "sender": "@claude-x:localhost",
        "origin_server_ts": 0,
        "room_id": "!room:localhost",
    }
    if state_key is not None:
        event["state_key"] = state_key
    if event_type == THREAD_STATE:
        return _errors(THREAD_STATE_SCHEMA, event, where)
    path = SPEC / EVENTS / f"{event_type}.yaml"
    if not path.is_file():
        return [f"{where}: no vendored schema for {event_type!r}"]
    problems = _errors(f"{EVENTS}{event_type}.yaml", event, where)
    if not isinstance(content, dict):
        return problems
    if event_type == "m.room.message":
        msgtype = content.get("msgtype")
        if msgtype not in MSGTYPES:
            problems.append(f"{where}: msgtype {msgtype!r} is not one the bridge may send")
        else:
            problems += _errors(f"{EVENTS}m.room.message${msgtype}.yaml", event, where)
        new = content.get("m.new_content")
        if new is not None:
            problems += event_problems(event_type, new, where=f"{where} m.new_content")
    relates = content.get("m.relates_to")
    if isinstance(relates, dict) and "rel_type" in relates:
        problems += _errors(
            "api/client-server/definitions/m.relates_to.yaml", relates, f"{where} m.relates_to"
        )
    if isinstance(relates, dict) and "m.in_reply_to" in relates:
        reply = relates["m.in_reply_to"]
        if not (isinstance(reply, dict) and str(reply.get("event_id", "")).startswith("$")):
            problems.append(f"{where}: m.in_reply_to without an event id: {reply!r}")
    if "m.mentions" in content:
        problems += _errors(
            "api/client-server/definitions/m.mentions.yaml",
            content["m.mentions"],
            f"{where} m.mentions",
        )
    return problems


def create_room_problems(body: dict[str, Any], *, where: str = "createRoom") -> list[str]:
    """The request against the createRoom schema, and what it puts into the room against the
    schemas of those events."""
    problems = _errors(CREATE_ROOM, body, where)
    for i, state in enumerate(body.get("initial_state") or []):
        problems += event_problems(
            state.get("type"), state.get("content"), state.get("state_key"), where=f"{where} #{i}"
        )
    if "creation_content" in body:
        problems += event_problems("m.room.create", body["creation_content"], "", where=where)
    if "power_level_content_override" in body:
        overrides = body["power_level_content_override"]
        problems += event_problems("m.room.power_levels", overrides, "", where=where)
    return problems
