"""Every captured Claude Code hook payload parses and renders to valid Matrix content."""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_bridge.events.parse import parse_hook_event
from claude_bridge.render import render_event

from .helpers import PAYLOADS, assert_valid, load_payload, make_ctx, payload_files

FILES = payload_files()


def test_payload_folder_is_there() -> None:
    # A moved folder must fail loudly, not silently parametrise over nothing.
    assert FILES, f"no hook payloads found in {PAYLOADS}"


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
@pytest.mark.parametrize(
    "ctx_fields",
    [
        {},
        {"operators": ("@alice:example.org", "@bob:example.org"), "title": "demo-app: say hi"},
        {"mirror": {"tool_output": "inline"}, "stream_text": "All done.", "stream_anchor": "x"},
    ],
    ids=["defaults", "operators", "inline"],
)
def test_payload_renders_valid_content(path: Path, ctx_fields: dict[str, object]) -> None:
    event = parse_hook_event(load_payload(path.name))
    messages = render_event(event, make_ctx(**ctx_fields))
    assert isinstance(messages, list)
    assert_valid(messages)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_payload_is_mirrored_unless_batch(path: Path) -> None:
    # Every captured event shows up in the room, except PostToolBatch (already shown per call).
    event = parse_hook_event(load_payload(path.name))
    messages = render_event(event, make_ctx())
    timeline = [m for m in messages if m.event_type == "m.room.message"]
    if event.hook_event_name == "PostToolBatch":
        assert messages == []
    else:
        assert timeline, f"{path.name} rendered no message"


def test_rendering_is_deterministic() -> None:
    for path in FILES:
        event = parse_hook_event(load_payload(path.name))
        assert render_event(event, make_ctx()) == render_event(event, make_ctx())
