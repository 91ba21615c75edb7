"""Which Read requests name an attached file's path (``control/attached_reads``), and the line
such an allowed request shows."""

from __future__ import annotations

from typing import Any

import pytest

from claude_bridge.control import decisions
from claude_bridge.control.attached_reads import requested_path
from claude_bridge.events.catalogue import PERMISSION_REQUEST
from claude_bridge.events.models import PermissionRequest
from claude_bridge.events.parse import parse_hook_event
from claude_bridge.render.approval import ATTACHED_BY_FIELD, REQUEST_FIELD
from claude_bridge.store.approvals import Approval
from tests.unit.render.helpers import event as render_event
from tests.unit.render.helpers import render

PATH = "/home/u/.cache/claude-bridge/attachments/s1/12-a.png"


def request(tool: str, **tool_input: Any) -> PermissionRequest:
    event = parse_hook_event(
        {
            "hook_event_name": PERMISSION_REQUEST.name,
            "session_id": "s1",
            "transcript_path": "/tmp/t.jsonl",
            "cwd": "/tmp",
            "tool_name": tool,
            "tool_input": tool_input,
        }
    )
    assert isinstance(event, PermissionRequest)
    return event


@pytest.mark.parametrize(
    "given",
    [PATH, PATH.replace("/s1/", "//s1/"), "/" + PATH],
)
def test_a_read_of_the_path_as_given_or_with_doubled_slashes_matches(given: str) -> None:
    assert requested_path(request("Read", file_path=given)) == PATH


@pytest.mark.parametrize(
    "given",
    [
        PATH + "/../../x",
        PATH.replace("/s1/", "/s1/./"),
        PATH.replace("/s1/", "/s2/../s1/"),
        "12-a.png",
        "attachments/s1/12-a.png",
        PATH + "\x00",
        "",
    ],
)
def test_dots_relative_paths_and_nul_never_match(given: str) -> None:
    assert requested_path(request("Read", file_path=given)) is None


def test_a_suffix_is_another_path() -> None:
    assert requested_path(request("Read", file_path=PATH + ".secret")) == PATH + ".secret"


@pytest.mark.parametrize(
    ("tool", "tool_input"),
    [
        ("Bash", {"command": f"cat {PATH}"}),
        ("Write", {"file_path": PATH, "content": "x"}),
        ("Edit", {"file_path": PATH, "old_string": "a", "new_string": "b"}),
        ("Read", {"path": PATH}),
        ("Read", {"file_path": 12}),
    ],
)
def test_only_the_read_tools_file_path_counts(tool: str, tool_input: dict[str, Any]) -> None:
    assert requested_path(request(tool, **tool_input)) is None


def test_the_outcome_names_who_attached_the_file() -> None:
    approval = Approval(
        1, "t", "", "k", "Read", {"tool_input": {"file_path": PATH}}, decisions.ALLOW, 0, 0,
        decided_by="@alice:x", reason=decisions.ATTACHED_REASON,
    )  # fmt: skip
    assert decisions.outcome(approval, 60, "Alice") == "✅ Allowed: reading the file Alice attached"
    assert decisions.answer(approval) == {
        "hookSpecificOutput": {
            "hookEventName": PERMISSION_REQUEST.name,
            "decision": {"behavior": "allow"},
        }
    }
    html = decisions.settled_content(approval, {}, 60, "Alice")["formatted_body"]
    assert "reading the file <a href=" in html


def test_a_read_the_bridge_allows_is_posted_allowed_and_pings_nobody() -> None:
    ev = render_event(PERMISSION_REQUEST.name, tool_name="Read", tool_input={"file_path": PATH})
    extra = {"hook_event_id": 7, ATTACHED_BY_FIELD: "@alice:x"}
    (msg,) = render(ev, operators=("@admin:x",), extra=extra)
    assert msg.anchor == "perm:7"
    assert msg.content["m.mentions"] == {}
    assert msg.content["body"].startswith("✅ Allowed: reading the file @alice:x attached\n📖")
    assert "React" not in msg.content["body"]
    assert PATH in msg.content[REQUEST_FIELD]["body"]
