"""Property tests: whatever the strings, render_event returns valid Matrix content in budget.

render_event is documented never to raise for a parsed event; these tests hold it to that.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_bridge.events.catalogue import CATALOGUE
from claude_bridge.events.parse import parse_hook_event
from claude_bridge.render import render_event

from .helpers import BASE, assert_valid, everything, make_ctx

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SECRET = "ghp_" + "Zz9" * 12

# Every code point, lone surrogates and control characters included.
chars = st.characters(codec=None, categories=None)
small = st.text(chars, max_size=200)
# Long, repetitive text: exercises trimming, attachments and the size search.
big = st.builds(lambda s, n: s * n, st.text(chars, min_size=1, max_size=40), st.integers(1, 4000))
texts = st.one_of(small, small, big, st.sampled_from(["", "\n", "```", "<script>", "| a |\n|-|"]))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(small, inner, max_size=4),
    max_leaves=12,
)
tool_names = st.one_of(
    st.sampled_from(
        ["Bash", "Edit", "MultiEdit", "Write", "NotebookEdit", "Read", "Grep", "Glob",
         "WebFetch", "Task", "TodoWrite", "mcp__srv__tool", "mcp__"]
    ),
    small,
)  # fmt: skip
contexts = st.fixed_dictionaries(
    {
        "project": small,
        "title": st.none() | small,
        "operators": st.lists(st.sampled_from(["@alice:example.org", "@b:x.y"]), max_size=2),
        "stream_text": st.none() | texts,
        "stream_anchor": st.none() | st.just("stream:m"),
        "mirror": st.sampled_from(
            [None, {"tool_output": "inline"}, {"tool_output": "off"}, {"max_inline_lines": 1}]
        ),
    }
)


def _render(data: dict[str, Any], ctx: dict[str, Any]) -> list:
    event = parse_hook_event({**BASE, **data})
    ctx = {**ctx, "operators": tuple(ctx["operators"])}
    messages = render_event(event, make_ctx(**ctx))
    assert_valid(messages)
    for msg in messages:
        html = msg.content.get("formatted_body", "")
        assert "<script" not in html.lower()
    return messages


@SETTINGS
@given(prompt=texts, reply=texts, ctx=contexts)
def test_prompt_and_reply(prompt: str, reply: str, ctx: dict[str, Any]) -> None:
    _render({"hook_event_name": "UserPromptSubmit", "prompt": prompt}, ctx)
    _render({"hook_event_name": "Stop", "last_assistant_message": reply}, ctx)
    _render({"hook_event_name": "SubagentStop", "agent_id": prompt[:50] or "a",
             "agent_type": reply[:50], "last_assistant_message": reply}, ctx)  # fmt: skip


@SETTINGS
@given(
    name=tool_names,
    tool_input=st.dictionaries(small, json_values, max_size=5),
    response=json_values,
    stdout=texts,
    ctx=contexts,
)
def test_tool_calls(
    name: str, tool_input: dict[str, Any], response: Any, stdout: str, ctx: dict[str, Any]
) -> None:
    call = {"tool_name": name, "tool_input": tool_input, "tool_use_id": "toolu_1"}
    _render({"hook_event_name": "PreToolUse", **call}, ctx)
    _render({"hook_event_name": "PostToolUse", **call, "tool_response": response}, ctx)
    bash = {"stdout": stdout, "stderr": stdout[:100], "interrupted": False}
    _render({"hook_event_name": "PostToolUse", **call, "tool_response": bash}, ctx)
    _render({"hook_event_name": "PostToolUseFailure", **call, "error": response}, ctx)
    _render({"hook_event_name": "PermissionRequest", **call}, ctx)


@SETTINGS
@given(
    old=texts,
    new=texts,
    path=small,
    ctx=contexts,
)
def test_edits(old: str, new: str, path: str, ctx: dict[str, Any]) -> None:
    for name, tool_input in [
        ("Edit", {"file_path": path, "old_string": old, "new_string": new}),
        ("MultiEdit", {"file_path": path, "edits": [{"old_string": old, "new_string": new}]}),
        ("Write", {"file_path": path, "content": new}),
    ]:
        data = {
            "tool_name": name,
            "tool_input": tool_input,
            "tool_use_id": "t",
            "tool_response": {},
        }
        _render({"hook_event_name": "PostToolUse", **data}, ctx)


@SETTINGS
@given(
    name=st.text(chars, min_size=1, max_size=128),
    fields=st.dictionaries(
        small.filter(lambda k: k not in ("session_id", "hook_event_name")), json_values, max_size=5
    ),
    ctx=contexts,
)
def test_any_event_name(name: str, fields: dict[str, Any], ctx: dict[str, Any]) -> None:
    # Unknown names, and known names whose fields may not fit their model.
    try:
        parse_hook_event({**BASE, **fields, "hook_event_name": name})
    except ValueError:
        fields = {}
    if any("\ud800" <= c <= "\udfff" for c in name):
        # Not a string JSON can carry as UTF-8: refused with a clear error, never rendered.
        with pytest.raises(ValueError, match="hook_event_name"):
            parse_hook_event({**BASE, "hook_event_name": name})
        return
    _render({**fields, "hook_event_name": name}, ctx)


@SETTINGS
@given(name=st.sampled_from(sorted(k.name for k in CATALOGUE)), text=texts, ctx=contexts)
def test_every_known_event_with_text_everywhere(name: str, text: str, ctx: dict[str, Any]) -> None:
    keys = ("prompt", "message", "title", "last_assistant_message", "delta", "reason", "source",
            "error", "error_details", "trigger", "compact_summary", "custom_instructions",
            "agent_type", "model", "notification_type", "message_id")  # fmt: skip
    _render({"hook_event_name": name, "agent_id": "a", **dict.fromkeys(keys, text)}, ctx)


@SETTINGS
@given(before=texts, after=texts, ctx=contexts)
def test_planted_secret_never_leaks(before: str, after: str, ctx: dict[str, Any]) -> None:
    text = before + SECRET + after
    cases: list[dict[str, Any]] = [
        {"hook_event_name": "UserPromptSubmit", "prompt": text},
        {"hook_event_name": "Stop", "last_assistant_message": text},
        {"hook_event_name": "PostToolUse", "tool_name": "Bash", "tool_use_id": "t",
         "tool_input": {"command": text}, "tool_response": {"stdout": text}},
    ]  # fmt: skip
    for data in cases:
        assert SECRET not in everything(_render(data, {**ctx, "stream_text": text}))
