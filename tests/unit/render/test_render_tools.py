"""Tool call lines and tool outputs, tool by tool."""

from __future__ import annotations

from typing import Any

import pytest

from claude_bridge.render.tools import output_text, tool_line

from .helpers import event, render

OPERATORS = ("@alice:example.org", "@bob:example.org")

CWD = "/home/dev/projects/demo-app"


@pytest.mark.parametrize(
    ("name", "tool_input", "line"),
    [
        ("Bash", {"command": "npm test", "description": "Run tests"}, "💻 Bash: npm test"),
        ("Bash", {"command": "set -e\nmake\nmake install"}, "💻 Bash: set -e …"),
        ("Edit", {"file_path": f"{CWD}/src/app.py"}, "✏️ Edit: src/app.py"),
        ("Write", {"file_path": "/etc/hosts", "content": "x"}, "📝 Write: /etc/hosts"),
        ("Read", {"file_path": f"{CWD}/README.md", "limit": 10}, "📖 Read: README.md"),
        ("Grep", {"pattern": "TODO", "path": f"{CWD}/src"}, "🔍 Grep: TODO in src"),
        ("Glob", {"pattern": "**/*.py"}, "🔍 Glob: **/*.py"),
        (
            "WebFetch",
            {"url": "https://example.org", "prompt": "x"},
            "🌐 WebFetch: https://example.org",
        ),
        ("WebSearch", {"query": "matrix spec"}, "🌐 WebSearch: matrix spec"),
        (
            "Task",
            {"description": "Find bugs", "subagent_type": "Explore"},
            "🤖 Task: Find bugs (Explore)",
        ),
        ("TodoWrite", {"todos": [{"status": "completed"}, {}]}, "📋 TodoWrite: 2 items, 1 done"),
        ("mcp__github__create_issue", {"title": "Crash"}, "🔌 github › create_issue: Crash"),
        ("mcp__x__y", {}, "🔌 x › y"),
        ("Unheard", {"n": 1, "thing": "value"}, "🔧 Unheard: value"),
    ],
)
def test_tool_line(name: str, tool_input: dict[str, Any], line: str) -> None:
    body, html = tool_line(name, tool_input, CWD, 160)
    assert body == line
    assert "<b>" in html


def test_long_arguments_are_shortened() -> None:
    body, _ = tool_line("Bash", {"command": "echo " + "x" * 500}, CWD, 40)
    assert len(body) <= len("💻 Bash: ") + 40 and body.endswith("…")


@pytest.mark.parametrize(
    ("response", "text"),
    [
        (None, ""),
        ("plain", "plain"),
        ({"stdout": "out", "stderr": "err"}, "out\nerr"),
        ({"type": "text", "file": {"filePath": "a", "content": "1\n2"}}, "1\n2"),
        ({"result": "fetched", "code": 200}, "fetched"),
        ([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "a\nb"),
        ({"content": [{"type": "text", "text": "## Report"}], "totalTokens": 5}, "## Report"),
        ({"filenames": ["a.py", "b.py"], "numFiles": 2}, "a.py\nb.py"),
        ({"filenames": [], "numFiles": 0}, "(no matches)"),
        ({"n": 1}, '{\n  "n": 1\n}'),
    ],
)
def test_output_text(response: Any, text: str) -> None:
    assert output_text(response) == text


def test_task_report_is_markdown() -> None:
    ev = event(
        "PostToolUse",
        tool_name="Task",
        tool_use_id="t",
        tool_input={"description": "Survey"},
        tool_response={"content": [{"type": "text", "text": "Found **3** issues"}]},
    )
    (msg,) = render(ev)
    assert msg.content["formatted_body"] == "Found <strong>3</strong> issues"


def test_write_of_a_new_file_is_an_all_plus_diff() -> None:
    ev = event(
        "PostToolUse",
        tool_name="Write",
        tool_use_id="t",
        tool_input={"file_path": f"{CWD}/new.txt", "content": "one\ntwo\n"},
        tool_response={"type": "create", "structuredPatch": []},
    )
    (msg,) = render(ev)
    assert (
        msg.content["body"]
        == "```diff\n--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1,2 @@\n+one\n+two\n```"
    )


def test_multi_edit_diff_and_attachment_name() -> None:
    edits = [{"old_string": f"a{i}", "new_string": f"b{i}"} for i in range(60)]
    ev = event(
        "PostToolUse",
        tool_name="MultiEdit",
        tool_use_id="t",
        tool_input={"file_path": f"{CWD}/m.py", "edits": edits},
    )
    msg, file = render(ev)
    assert msg.content["body"].count("\n-a") + msg.content["body"].count("\n+b") > 10
    assert file.attachment is not None and file.attachment.filename == "m.py.diff"


def test_bash_tails() -> None:
    def tail(response: dict[str, Any]) -> str:
        ev = event("PostToolUse", tool_name="Bash", tool_use_id="t",
                   tool_input={"command": "x"}, tool_response=response)  # fmt: skip
        return str(render(ev)[0].content["body"].rsplit("\n", 1)[-1])

    assert tail({"stdout": "", "stderr": ""}) == "(no output)"
    assert tail({"stdout": "a", "interrupted": True}) == "⏹️ interrupted"
    assert tail({"stdout": "", "backgroundTaskId": "b1"}) == "⏳ running in the background (b1)"


def test_permission_denied_marks_the_line() -> None:
    ev = event("PermissionDenied", tool_name="Bash", tool_use_id="t",
               tool_input={"command": "rm -rf /"}, reason="Blocked by auto mode")  # fmt: skip
    (msg,) = render(ev)
    assert msg.replaces == "tool:t"
    assert msg.content["body"] == "🚫 Bash: rm -rf / — Blocked by auto mode"


def test_permission_request_is_the_anchored_approval_prompt() -> None:
    ev = event(
        "PermissionRequest", tool_name="Bash", tool_use_id="t", tool_input={"command": "ls -la"}
    )
    (msg,) = render(ev, operators=OPERATORS, extra={"hook_event_id": 42})
    assert msg.anchor == "perm:42" and msg.replaces is None
    body = msg.content["body"]
    assert body.startswith("🔐 Claude asks to use 💻 Bash: ls -la")
    assert "```console\nls -la\n```" in body
    assert "✅" in body and "deny <reason>" in body
    assert msg.content["m.mentions"] == {"user_ids": list(OPERATORS)}
    # Without a hook event id (no delivery context) there is nothing to anchor.
    (plain,) = render(ev)
    assert plain.anchor is None
