"""Tool call lines and tool outputs, tool by tool."""

from __future__ import annotations

from typing import Any

import pytest

from claude_bridge.render.tools import output_text, tool_line

from .helpers import assert_valid, event, load_recorded, render

OPERATORS = ("@alice:example.org", "@bob:example.org")

CWD = "/home/dev/projects/demo-app"


@pytest.mark.parametrize(
    ("name", "tool_input", "line"),
    [
        ("Bash", {"command": "npm test", "description": "Run tests"}, "💻 Bash: npm test"),
        ("Bash", {"command": "set -e\nmake\nmake install"}, "💻 Bash: set -e …"),
        ("Edit", {"file_path": f"{CWD}/src/app.py"}, "✏️ Edit: src/app.py"),
        ("Write", {"file_path": "/etc/hosts", "content": "x"}, "📝 Write: /etc/hosts"),
        ("Read", {"file_path": f"{CWD}/README.md"}, "📖 Read: README.md"),
        ("Read", {"file_path": f"{CWD}/README.md", "limit": 10}, "📖 Read: README.md · lines 1–10"),
        (
            "Read",
            {"file_path": f"{CWD}/a.py", "offset": 10, "limit": 5},
            "📖 Read: a.py · lines 10–14",
        ),
        ("Read", {"file_path": f"{CWD}/a.py", "offset": 7}, "📖 Read: a.py · from line 7"),
        ("Grep", {"pattern": "TODO", "path": f"{CWD}/src"}, "🔍 Grep: TODO in src"),
        # The project itself needs no saying; outside it the path stays absolute.
        ("Grep", {"pattern": "TODO", "path": CWD}, "🔍 Grep: TODO"),
        ("Grep", {"pattern": "TODO", "path": f"{CWD}/", "glob": "*.py"}, "🔍 Grep: TODO (*.py)"),
        ("Grep", {"pattern": "x", "path": f"{CWD}-old/src"}, f"🔍 Grep: x in {CWD}-old/src"),
        ("Glob", {"pattern": "*.md", "path": f"{CWD}/docs"}, "🔍 Glob: *.md in docs"),
        ("LS", {"path": CWD}, "📂 LS: ."),
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
    # 12 lines: the file's header (---, +++), three edits of three (@@, -, +), the next @@.
    assert msg.content["body"].count("\n-a") + msg.content["body"].count("\n+b") == 6
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


def test_a_read_says_which_lines_in_which_language() -> None:
    """Recorded: Read with ``offset: 10, limit: 5`` of a 63-line Python file."""
    (msg,) = render(load_recorded("PostToolUse.Read.range.json"))
    assert_valid([msg])
    assert msg.thread_root == "tool:toolu_cap001"
    lines = "line 10\nline 11\nline 12\nline 13\nline 14"
    assert msg.content["body"] == f"lines 10–14 of 63\n```python\n{lines}\n```"
    assert msg.content["formatted_body"] == (
        f'<p><i>lines 10–14 of 63</i></p><pre><code class="language-python">{lines}</code></pre>'
    )


def test_a_whole_file_read_is_a_short_preview_and_the_file() -> None:
    """Recorded: a whole 63-line file. The thread reply shows 12 lines (nheko and older Element X
    show thread replies in the timeline); the file is attached under its own name."""
    data = load_recorded("PostToolUse.Read.json")
    msg, file = render(data)
    assert_valid([msg, file])
    body = msg.content["body"]
    assert body.startswith("63 lines\n```python\nline 1\n")
    assert "line 12\n```\n… (truncated, 50 more lines — full text attached)" in body
    assert file.content["body"] == "app.py" and file.thread_root == msg.thread_root
    assert file.attachment is not None
    assert file.attachment.data.decode() == data["tool_response"]["file"]["content"]


def test_no_trailing_blank_line_in_a_code_block() -> None:
    response = {"type": "text", "file": {"filePath": f"{CWD}/x.sh", "content": "ls\n\n",
                                         "numLines": 2, "startLine": 1, "totalLines": 2}}  # fmt: skip
    ev = event("PostToolUse", tool_name="Read", tool_use_id="t",
               tool_input={"file_path": f"{CWD}/x.sh"}, tool_response=response)  # fmt: skip
    (msg,) = render(ev)
    assert msg.content["body"] == "2 lines\n```bash\nls\n```"
    bash = event("PostToolUse", tool_name="Bash", tool_use_id="b",
                 tool_input={"command": "ls"}, tool_response={"stdout": "a\nb\n\n"})  # fmt: skip
    assert render(bash)[0].content["body"] == "```console\n$ ls\na\nb\n```"


def test_an_image_read_is_a_note_not_its_bytes() -> None:
    file = {"base64": "iVBORw0KGgo" * 100, "type": "image/png",
            "dimensions": {"originalWidth": 2600, "originalHeight": 1800}}  # fmt: skip
    ev = event("PostToolUse", tool_name="Read", tool_use_id="i",
               tool_input={"file_path": f"{CWD}/d.png"},
               tool_response={"type": "image", "file": file})  # fmt: skip
    (msg,) = render(ev)
    assert msg.content["body"] == "🖼️ image/png, 2600×1800"


def test_search_results_show_project_paths_relative() -> None:
    files = {"mode": "files_with_matches", "numFiles": 3,
             "filenames": [f"{CWD}/src/a.py", f"{CWD}/b.py", "/etc/hosts"]}  # fmt: skip
    grep = event("PostToolUse", tool_name="Grep", tool_use_id="g",
                 tool_input={"pattern": "x", "path": CWD}, tool_response=files)  # fmt: skip
    assert render(grep)[0].content["body"] == "```\nsrc/a.py\nb.py\n/etc/hosts\n```"
    content = {"mode": "content", "content": f"{CWD}/src/a.py:3:x = 1\n{CWD}-old/c.py:1:x"}
    grep = event("PostToolUse", tool_name="Grep", tool_use_id="g",
                 tool_input={"pattern": "x", "output_mode": "content"}, tool_response=content)  # fmt: skip
    assert f"src/a.py:3:x = 1\n{CWD}-old/c.py:1:x" in render(grep)[0].content["body"]


def test_paths_are_relative_to_the_thread_project_without_a_cwd() -> None:
    ev = event("PreToolUse", tool_name="Grep", tool_use_id="g",
               tool_input={"pattern": "TODO", "path": f"{CWD}/src"})  # fmt: skip
    ev = ev.model_copy(update={"cwd": None})
    (msg,) = render(ev, extra={"cwd": CWD})
    assert msg.content["body"] == "🔍 Grep: TODO in src"
    (msg,) = render(event("FileChanged", file_path=f"{CWD}/src/a.py", event="change"),
                    mirror={"events": {"FileChanged": True}})  # fmt: skip
    assert msg.content["body"] == "📄 File changed: src/a.py · change"
