"""Untrusted text stays text: HTML escaped, links restricted, nobody pinged by accident."""

from __future__ import annotations

import json

import pytest

from claude_bridge.events.models import HookEvent
from claude_bridge.events.parse import parse_hook_event
from claude_bridge.render import render_event
from claude_bridge.render.markdown import markdown_to_html

from .helpers import assert_valid, event, load_payload, make_ctx, payload_files, render

OPERATORS = ("@alice:example.org", "@bob:example.org")
HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)"><a href="javascript:x">y</a>'


def _html(messages: list) -> str:
    return "".join(m.content.get("formatted_body", "") for m in messages)


@pytest.mark.parametrize(
    "ev",
    [
        event("UserPromptSubmit", prompt=HOSTILE),
        event("Stop", last_assistant_message=HOSTILE),
        event("PreToolUse", tool_name="Read", tool_use_id="t", tool_input={"file_path": HOSTILE}),
        event("PreToolUse", tool_name=HOSTILE, tool_use_id="t", tool_input={"x": HOSTILE}),
        event(
            "PostToolUse",
            tool_name="Bash",
            tool_use_id="t",
            tool_input={"command": HOSTILE},
            tool_response={"stdout": HOSTILE, "stderr": HOSTILE},
        ),
        event(
            "PostToolUse",
            tool_name="Edit",
            tool_use_id="t",
            tool_input={"file_path": HOSTILE, "old_string": "a", "new_string": HOSTILE},
        ),
        event("PostToolUseFailure", tool_name="Grep", tool_use_id="t", error=HOSTILE),
        event("Notification", message=HOSTILE, title=HOSTILE),
        event("StopFailure", error=HOSTILE, error_details=HOSTILE),
        event("SubagentStart", agent_id="a", agent_type=HOSTILE),
        event("PostCompact", trigger="auto", compact_summary=HOSTILE),
        event("CwdChanged", old_cwd=HOSTILE, new_cwd="/x"),
        event(HOSTILE),
    ],
    ids=lambda e: e.hook_event_name[:20],
)
def test_raw_html_is_escaped(ev: HookEvent) -> None:
    messages = render(ev, operators=OPERATORS)
    assert_valid(messages)
    html = _html(messages)
    assert "<script" not in html
    assert "<img" not in html
    assert 'href="javascript' not in html
    assert 'onerror="' not in html


def test_markdown_links_and_images() -> None:
    html = markdown_to_html(
        "[ok](https://example.org) [mail](mailto:a@example.org) [bad](javascript:alert(1)) "
        "[data](data:text/html,x) [rel](/etc/passwd) ![pic](https://tracker.example/p.png)"
    )
    assert '<a href="https://example.org">ok</a>' in html
    assert '<a href="mailto:a@example.org">mail</a>' in html
    assert "<img" not in html
    assert '<a href="https://tracker.example/p.png">🖼️ pic</a>' in html
    assert html.count("<a ") == 3


def test_markdown_features() -> None:
    html = markdown_to_html("| a | b |\n|---|--:|\n| 1 | ~~2~~ |\n\n- x\n- y\n\n```py\nx<1\n```")
    # Element X shows no <table>: aligned monospace instead, the right-aligned column kept so.
    assert (
        "<table>" not in html and "<pre><code>a |     b\n--+------\n1 | ~~2~~</code></pre>" in html
    )
    assert "style=" not in html
    assert "<ul>" in html
    assert '<pre><code class="language-py">x&lt;1\n</code></pre>' in html


def test_mentions_only_where_a_human_is_needed() -> None:
    pinging = {"Notification", "StopFailure", "PermissionRequest"}
    events = [load_payload(p.name) for p in payload_files()]
    events.append({**load_payload("Stop.json"), "hook_event_name": "StopFailure"})
    body_with_ids = "hi @alice:example.org see https://matrix.to/#/@bob:example.org @room"
    events.append({**load_payload("Stop.json"), "last_assistant_message": body_with_ids})
    events.append({**load_payload("UserPromptSubmit.json"), "prompt": body_with_ids})
    seen = set()
    for data in events:
        messages = render_event(parse_hook_event(data), make_ctx(operators=OPERATORS))
        for msg in messages:
            if msg.event_type != "m.room.message":
                continue
            mentions = msg.content["m.mentions"]
            if data["hook_event_name"] in pinging:
                seen.add(data["hook_event_name"])
                assert mentions == {"user_ids": list(OPERATORS)}
                # m.notice is silenced by the default push rules, mentions included.
                assert msg.content["msgtype"] == "m.text"
                for user in OPERATORS:
                    assert user in msg.content["body"]
                    assert f'<a href="https://matrix.to/#/{user}">' in msg.content["formatted_body"]
            else:
                assert mentions == {}, data["hook_event_name"]
    assert seen == pinging


def test_no_operators_means_no_ping() -> None:
    for mirror in (None, {"mention_operators": False}):
        ctx = {"operators": OPERATORS} if mirror else {}
        (msg,) = render(load_payload("Notification.json"), mirror=mirror, **ctx)
        assert msg.content["m.mentions"] == {}
        assert msg.content["msgtype"] == "m.notice"
        assert "@alice" not in json.dumps(msg.content)


def test_unknown_event_is_a_compact_notice() -> None:
    (msg,) = render(event("SomeNewEvent", whatever={"nested": [1, 2]}, text="x" * 10_000))
    assert msg.content == {"msgtype": "m.notice", "body": "⚙️ SomeNewEvent", "m.mentions": {}}
    assert msg.sender is None and msg.anchor is None


def test_known_event_with_bad_shape_still_renders() -> None:
    # Built without parse_hook_event, with a field of the wrong type.
    ev = HookEvent.model_validate(
        {"session_id": "s", "hook_event_name": "UserPromptSubmit", "prompt": {"not": "text"}}
    )
    messages = render(ev)
    assert_valid(messages)
    assert messages[0].content["body"] == "⚙️ UserPromptSubmit"


def test_subagent_ghost_is_a_valid_localpart() -> None:
    (msg,) = render(event("SubagentStart", agent_id="A/B c:ÄÖ" * 20, agent_type="Explore"))
    assert msg.sender is not None and msg.sender.startswith("agent-")
    assert len(msg.sender) <= 60
    assert msg.sender_displayname == "Explore (subagent)"
    (tool,) = render(
        event("PreToolUse", tool_name="Read", tool_use_id="t", tool_input={}, agent_id="a79")
    )
    assert tool.sender == "agent-a79"
