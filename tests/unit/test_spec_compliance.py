"""Every message and state event the renderer makes, and every room the bridge creates, is valid
by the Matrix spec's JSON schemas (tests/spec_schemas.py; the real homeserver's view of the same
is tests/e2e/test_spec_compliance.py).

Driven by every captured hook payload (shared/claude-code) and the recorded transcript
(tests/fixtures, through catch-up's synthetic events), under the contexts delivery gives the
renderer, and by the createRoom bodies of a thread room and a project space.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from claude_bridge.catchup.marker import with_catchup_marker
from claude_bridge.catchup.recover import synthetic_events
from claude_bridge.catchup.transcript import parse_items
from claude_bridge.config import parse_config
from claude_bridge.delivery.sending import thread_relation
from claude_bridge.events.parse import parse_hook_event
from claude_bridge.ids import SessionID, ThreadID
from claude_bridge.matrix.relations import edit_content
from claude_bridge.permissions import Permissions
from claude_bridge.render import OutboundMessage, RenderContext, render_event
from claude_bridge.render.room_status import with_room_status
from claude_bridge.room_state import ACTIVITIES, ENDED, WAITING, WORKING
from claude_bridge.router import ThreadRouter
from claude_bridge.spaces import ProjectSpaces
from claude_bridge.store import Thread
from tests.spec_schemas import create_room_problems, event_problems

from .render.helpers import PAYLOADS, payload_files

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SESSION = "3eb5f21d-5dcb-43a8-9ab8-939331f73b6b"
CWD = "/home/dev/projects/demo-app"
RENDER = with_catchup_marker(with_room_status(render_event))

CONTEXTS: list[dict[str, Any]] = [
    {"activity": None, "title": None},
    {"activity": WORKING, "title": "say hi · demo-app", "operators": ("@alice:localhost",)},
    {"activity": WAITING, "title": None, "stream_anchor": "stream:m1", "stream_text": "Hel"},
    {"activity": ENDED, "title": "t"},
]


def context(fields: dict[str, Any]) -> RenderContext:
    extra = {"session_id": SESSION, "cwd": CWD, "hook_event_id": 7, **fields}
    operators = extra.pop("operators", ())
    return RenderContext(thread_id=SESSION, project="demo-app", operators=operators, extra=extra)


def payloads() -> list[tuple[str, dict[str, Any]]]:
    captured = [(p.name, json.loads(p.read_text(encoding="utf-8"))) for p in payload_files()]
    items = parse_items((FIXTURES / "transcript.jsonl").read_bytes(), SESSION)
    start = parse_hook_event({"session_id": SESSION, "cwd": CWD, "hook_event_name": "Stop"})
    recovered = [
        (f"transcript #{i} {p['hook_event_name']}", p)
        for i, p in enumerate(synthetic_events(items, 2, start))
    ]
    return captured + recovered


def problems_of(message: OutboundMessage, where: str) -> list[str]:
    """The message as delivery sends it: state as is; a message also as an edit and as a reply
    in a thread, the two relations delivery adds."""
    content = dict(message.content)
    if message.attachment is not None:
        content["url"] = "mxc://localhost/AbCdEfGhIjKl"  # what the upload gives
    if message.state_key is not None:
        return event_problems(message.event_type, content, message.state_key, where=where)
    found = event_problems(message.event_type, content, where=where)
    if message.event_type == "m.room.message":
        edit = edit_content("$original:localhost", content)
        found += event_problems(message.event_type, edit, where=f"{where} as an edit")
        reply = {**content, "m.relates_to": thread_relation("$root:localhost")}
        found += event_problems(message.event_type, reply, where=f"{where} in a thread")
    return found


def test_the_payloads_are_there() -> None:
    names = {p.name for p in payload_files()}
    assert len(names) >= 19 and "PermissionRequest.json" in names, PAYLOADS
    assert sum(1 for name, _ in payloads() if name.startswith("transcript")) > 5


@pytest.mark.parametrize("fields", CONTEXTS, ids=lambda f: f"activity={f['activity']}")
def test_every_rendered_message_is_valid_by_the_spec(fields: dict[str, Any]) -> None:
    kinds: set[str] = set()
    problems: list[str] = []
    for name, payload in payloads():
        for i, message in enumerate(RENDER(parse_hook_event(payload), context(fields))):
            kinds.add(message.event_type + ":" + str(message.content.get("msgtype", "state")))
            problems += problems_of(message, f"{name} part {i}")
    assert problems == []
    assert {"m.room.message:m.notice", "m.room.message:m.text"} <= kinds


def test_the_state_a_session_goes_through_is_valid_by_the_spec() -> None:
    names = ["SessionStart", "UserPromptSubmit", "PermissionRequest", "Stop", "SessionEnd"]
    seen, problems = set(), []
    for previous in (None, *ACTIVITIES):
        for name in names:
            payload = json.loads((PAYLOADS / f"{name}.json").read_text(encoding="utf-8"))
            for message in RENDER(parse_hook_event(payload), context({"activity": previous})):
                if message.state_key is not None:
                    seen.add(message.event_type)
                    problems += problems_of(message, f"{name} after {previous}")
    assert problems == []
    assert seen == {"m.room.topic", "m.room.name", "org.claude_bridge.thread"}


def _router() -> tuple[ThreadRouter, ProjectSpaces]:
    config = parse_config(
        {
            "homeserver": {"address": "http://127.0.0.1:1", "domain": "localhost"},
            "appservice": {"as_token": "a" * 32, "hs_token": "b" * 32},
            "hooks": {"tokens": {"laptop": "c" * 32}},
            "bridge": {"permissions": {"@alice:localhost": "operator"}},
        }
    )
    permissions = Permissions(config.bridge.permissions)
    spaces = ProjectSpaces(
        None,  # type: ignore[arg-type]  # the bodies are pure: no store, no client
        None,  # type: ignore[arg-type]
        permissions,
        bot_mxid="@claudebot:localhost",
        domain="localhost",
    )
    names = config.matrix_names()
    return ThreadRouter(config, names, None, None, permissions, spaces), spaces  # type: ignore[arg-type]


@pytest.mark.parametrize("version", ["10", "11", "12"])
@pytest.mark.parametrize("activity", [WAITING, WORKING])
def test_created_rooms_are_valid_by_the_spec(version: str, activity: str) -> None:
    router, spaces = _router()
    thread = Thread(
        id=ThreadID(SESSION),
        session_id=SessionID(SESSION),
        ghost_mxid=router.names.ghost(SESSION),
        alias=router.names.alias(SESSION),
        project_path=CWD,
        project_name="demo-app",
    )
    invite = ["@alice:localhost"]
    body = router.room_body(thread, activity, "!space:localhost", version, invite)
    assert create_room_problems(body) == []
    kinds = {s["type"] for s in body["initial_state"]}
    assert {"m.room.topic", "m.space.parent", "m.room.guest_access"} <= kinds
    assert body["creation_content"] == {"creator": thread.ghost_mxid}
    space = spaces.space_body("Claude · demo-app", CWD, version, invite)
    assert create_room_problems(space, where="space") == []
    assert space["creation_content"] == {"type": "m.space", "creator": "@claudebot:localhost"}


def test_the_old_topic_shape_fails_so_the_check_can_fail() -> None:
    old = {"topic": "t", "m.topic": [{"mimetype": "text/plain", "body": "t"}]}
    assert event_problems("m.room.topic", old, "") != []
    assert event_problems("org.claude_bridge.thread", {"status": "ended"}, "") != []
    assert event_problems("m.room.message", {"msgtype": "m.text"}) != []
