"""The ``bridge.mirror`` section: tool output placement, switching events off, the models."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from claude_bridge.events.parse import parse_hook_event
from claude_bridge.render import MirrorConfig, RedactConfig, render_event
from claude_bridge.render.room_status import with_room_status

from .helpers import assert_valid, event, load_payload, make_ctx, render

POST = load_payload("PostToolUse.json")
FAIL = {
    **load_payload("PreToolUse.json"),
    "hook_event_name": "PostToolUseFailure",
    "error": "Exit code 2\nboom",
}
ANCHOR = "tool:toolu_dce37e0b10804babbda9a438"


def test_thread_is_the_default() -> None:
    (msg,) = render(POST)
    assert msg.thread_root == ANCHOR
    assert msg.anchor is None and msg.replaces is None


def test_inline_output_goes_to_the_timeline_and_names_the_call() -> None:
    (msg,) = render(POST, mirror={"tool_output": "inline"})
    assert msg.thread_root is None
    assert msg.content["body"].startswith("↳ Bash: echo hello-from-tool\n```console")


def test_output_off() -> None:
    assert render(POST, mirror={"tool_output": "off"}) == []
    # A failure still marks its line.
    (line,) = render(FAIL, mirror={"tool_output": "off"})
    assert line.replaces == ANCHOR
    assert line.content["body"] == "❌ Bash: echo hello-from-tool — Exit code 2 …"


def test_failure_edits_the_line_and_replies_in_thread() -> None:
    line, reply = render(FAIL)
    assert line.replaces == ANCHOR and line.anchor is None
    assert reply.thread_root == ANCHOR
    assert reply.content["body"].startswith("❌ Bash failed\n")


def test_interrupt() -> None:
    line, reply = render({**FAIL, "is_interrupt": True})
    assert line.content["body"].startswith("⏹️ Bash: echo hello-from-tool — interrupted")
    assert reply.content["body"].startswith("⏹️ Bash interrupted")


def test_without_pre_tool_use_post_posts_the_line_itself() -> None:
    mirror = {"events": {"PreToolUse": False}}
    assert render(load_payload("PreToolUse.json"), mirror=mirror) == []
    line, output = render(POST, mirror=mirror)
    assert line.anchor == ANCHOR and line.content["body"] == "💻 Bash: echo hello-from-tool"
    assert output.thread_root == ANCHOR
    line, _ = render(FAIL, mirror=mirror)
    assert line.anchor == ANCHOR and line.replaces is None  # a new line, not an edit


def test_disabled_events_keep_room_state() -> None:
    mirror = {"events": {"SessionEnd": False, "UserPromptSubmit": False}}
    end = with_room_status(render_event)(
        parse_hook_event(load_payload("SessionEnd.json")), make_ctx(mirror=mirror)
    )
    assert [m.event_type for m in end] == ["m.room.topic", "org.claude_bridge.thread"]
    prompt = render(load_payload("UserPromptSubmit.json"), mirror=mirror)
    assert [m.event_type for m in prompt] == ["m.room.name"]


def test_disabled_stop_and_stream() -> None:
    mirror = {"events": {"Stop": False, "MessageDisplay": False}}
    assert render(load_payload("Stop.json"), mirror=mirror) == []
    assert render(load_payload("MessageDisplay.json"), mirror=mirror) == []


def test_default_off_events_can_be_enabled() -> None:
    ev = event("InstructionsLoaded", file_path="/p/CLAUDE.md", load_reason="session_start")
    assert render(ev) == []
    (msg,) = render(ev, mirror={"events": {"InstructionsLoaded": True}})
    assert msg.content["body"] == "📜 Instructions loaded: /p/CLAUDE.md · session_start"


def test_unknown_events_switch() -> None:
    assert render(event("Brand_New"), mirror={"unknown_events": False}) == []
    assert render(event("Brand_New"), mirror={"events": {"Brand_New": False}}) == []
    assert render(
        event("Brand_New"), mirror={"unknown_events": False, "events": {"Brand_New": True}}
    )


def test_post_tool_batch_renders_nothing() -> None:
    batch = load_payload("PostToolBatch.json")
    assert render(batch) == []
    assert render(batch, mirror={"events": {"PostToolBatch": True}}) == []


def test_diffs_can_be_turned_off() -> None:
    ev = event(
        "PostToolUse",
        tool_name="Edit",
        tool_use_id="t",
        tool_input={"file_path": "/x/a.py", "old_string": "a\n", "new_string": "b\n"},
        tool_response={"filePath": "/x/a.py", "structuredPatch": []},
    )
    (diff,) = render(ev)
    # Its place in the file is unknown: no line numbers made up.
    assert diff.content["body"] == "```diff\n--- /x/a.py\n+++ /x/a.py\n@@\n-a\n+b\n```"
    (raw,) = render(ev, mirror={"show_diffs": False})
    assert "```diff" not in raw.content["body"]


def test_structured_patch_gives_real_line_numbers() -> None:
    patch = [{"oldStart": 41, "oldLines": 2, "newStart": 41, "newLines": 2,
              "lines": [" def f():", "-    return 1", "+    return 2"]}]  # fmt: skip
    ev = event(
        "PostToolUse",
        tool_name="Edit",
        tool_use_id="t",
        cwd="/x",
        tool_input={"file_path": "/x/a.py", "old_string": "1", "new_string": "2"},
        tool_response={"structuredPatch": patch},
    )
    (diff,) = render(ev)
    assert "@@ -41,2 +41,2 @@\n def f():\n-    return 1\n+    return 2" in diff.content["body"]
    assert "--- a/a.py" in diff.content["body"]


def test_max_inline_lines() -> None:
    ev = {**POST, "tool_response": {"stdout": "\n".join(map(str, range(50)))}}
    (msg, _file) = render(ev, mirror={"max_inline_lines": 5})
    assert "… (truncated, 46 more lines — full text attached)" in msg.content["body"]


def _fields(model: type[BaseModel]) -> list[tuple[str, Any]]:
    out = []
    for name, field in model.model_fields.items():
        out.append((f"{model.__name__}.{name}", field))
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out.extend(_fields(annotation))
    return out


@pytest.mark.parametrize(("name", "field"), _fields(MirrorConfig))
def test_every_field_is_described(name: str, field: Any) -> None:
    # The example config is generated from these descriptions.
    assert field.description and len(field.description) > 15, name


def test_config_validation() -> None:
    assert MirrorConfig().tool_output == "thread"
    assert MirrorConfig.model_validate({"redact": {"patterns": ["x+"]}}).redact == RedactConfig(
        patterns=["x+"]
    )
    with pytest.raises(ValidationError):
        MirrorConfig.model_validate({"tool_output": "sideways"})
    with pytest.raises(ValidationError):
        MirrorConfig.model_validate({"tool_outptu": "off"})  # typos are errors
    with pytest.raises(ValidationError):
        MirrorConfig.model_validate({"max_content_bytes": 70_000})


def test_mirror_may_be_a_model() -> None:
    config = MirrorConfig(tool_output="inline")
    (msg,) = render(POST, mirror=config)
    assert msg.thread_root is None
    assert_valid([msg])


def test_inline_without_pre_tool_use_does_not_repeat_the_line() -> None:
    mirror = {"tool_output": "inline", "events": {"PreToolUse": False}}
    line, output = render(POST, mirror=mirror)
    assert line.content["body"] == "💻 Bash: echo hello-from-tool"
    assert output.content["body"].startswith("```console\n$ echo hello-from-tool")
    assert output.thread_root is None
