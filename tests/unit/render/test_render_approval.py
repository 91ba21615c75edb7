"""The approval prompt: what Claude asks to do shown once, compact, and what it becomes decided.

Pure rendering; the pings, the edits and the denied call's line in a real room are in
``tests/e2e/test_approval_prompt.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from claude_bridge.control import decisions
from claude_bridge.render.approval import REQUEST_FIELD
from claude_bridge.render.diff import Seen, applied, seen_in, unified_diff
from claude_bridge.render.messages import OutboundMessage
from claude_bridge.store.approvals import Approval
from tests.unit.control import test_pure as pure

from .helpers import assert_valid, event, load_payload, render

OPS = ("@admin:localhost",)
CWD = "/home/dev/projects/demo-app"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hook-payloads"
SUGGESTIONS = load_payload("PermissionRequest.json")["permission_suggestions"]


def prompt(tool_name: str, tool_input: dict[str, Any], **fields: Any) -> OutboundMessage:
    fields.setdefault("permission_suggestions", SUGGESTIONS)
    ev = event("PermissionRequest", tool_name=tool_name, tool_input=tool_input, **fields)
    messages = render(ev, operators=OPS, extra={"hook_event_id": 42})
    assert_valid(messages)
    (msg,) = messages
    assert msg.anchor == "perm:42" and msg.replaces is None
    assert msg.content["msgtype"] == "m.text"  # a notice would not ping: suppress_notices
    assert msg.content["m.mentions"] == {"user_ids": list(OPS)}
    return msg


def test_a_one_line_command_is_shown_once_on_the_prompts_first_line() -> None:
    captured = load_payload("PermissionRequest.json")  # Claude Code's own, 2.1.197
    msg = prompt(captured["tool_name"], captured["tool_input"])
    assert msg.content["body"] == (
        "🔐 Claude asks to use 💻 Bash: echo hello-from-tool > tool-output.txt — Print a greeting"
        "\nReact ✅ allow once · 🔁 allow for this session · ❌ deny — or reply deny <reason>"
        " — @admin:localhost"
    )
    assert msg.content["formatted_body"] == (
        "<p>🔐 Claude asks to use 💻 <b>Bash</b>: "
        "<code>echo hello-from-tool &gt; tool-output.txt</code> — Print a greeting</p>"
        "<p>React ✅ allow once · 🔁 allow for this session · ❌ deny — or reply deny "
        '&lt;reason&gt; — <a href="https://matrix.to/#/@admin:localhost">admin</a></p>'
    )
    assert msg.content[REQUEST_FIELD] == {
        "body": "💻 Bash: echo hello-from-tool > tool-output.txt — Print a greeting",
        "formatted_body": "<p>💻 <b>Bash</b>: "
        "<code>echo hello-from-tool &gt; tool-output.txt</code> — Print a greeting</p>",
    }


@pytest.mark.parametrize(
    "command",
    [
        "set -e\nmake\nmake install",  # several lines
        'grep "a  b" notes.txt',  # the line would squeeze the spaces: not the command
        "echo " + "x" * 300,  # longer than a line
    ],
)
def test_any_other_command_is_one_block_and_the_line_does_not_repeat_it(command: str) -> None:
    msg = prompt("Bash", {"command": command, "description": "Build it"})
    body, html = msg.content["body"], msg.content["formatted_body"]
    assert body.startswith("🔐 Claude asks to use 💻 Bash — Build it\n```bash\n")
    assert body.count(command[:20]) == 1
    assert f'<pre><code class="language-bash">{command[:20]}' in html.replace("&quot;", '"')


def test_an_edit_is_a_diff_with_no_made_up_line_numbers_and_its_indentation() -> None:
    recorded = json.loads((FIXTURES / "PostToolUse.Edit.json").read_text())  # 2.1.332
    msg = prompt("Edit", recorded["tool_input"])
    assert msg.content["body"] == (
        "🔐 Claude asks to use ✏️ Edit: src/app.py\n"
        "```diff\n--- a/src/app.py\n+++ b/src/app.py\n@@\n"
        "-    return items[:10]\n+    return items[:n]\n```\n"
        "React ✅ allow once · 🔁 allow for this session · ❌ deny — or reply deny <reason>"
        " — @admin:localhost"
    )
    assert "@@ -1" not in msg.content["formatted_body"]
    assert (
        "\n-    return items[:10]\n+    return items[:n]</code></pre>"
        in (msg.content["formatted_body"])
    )
    every = prompt("Edit", {**recorded["tool_input"], "replace_all": True})
    assert every.content["body"].startswith("🔐 Claude asks to use ✏️ Edit: src/app.py — every")


def test_a_multi_edit_shows_each_change_under_its_own_hunk_marker() -> None:
    edits = [
        {"old_string": "a = 1\nb = 2", "new_string": "a = 1\nb = 3"},
        {"old_string": "    x()", "new_string": "    y()"},
    ]
    msg = prompt("MultiEdit", {"file_path": f"{CWD}/m.py", "edits": edits})
    assert (
        "--- a/m.py\n+++ b/m.py\n@@\n a = 1\n-b = 2\n+b = 3\n@@\n-    x()\n+    y()\n```"
        in (msg.content["body"])
    )


def test_a_write_shows_the_new_content_since_the_old_is_unknown() -> None:
    recorded = json.loads((FIXTURES / "PostToolUse.Write.json").read_text())  # 2.1.332
    msg = prompt("Write", recorded["tool_input"])
    assert msg.content["body"].startswith(
        "🔐 Claude asks to use 📝 Write: src/new.py — 1 line\n```\nprint('hi')\n```\nReact"
    )
    assert "/dev/null" not in msg.content["body"]  # it may exist: a diff from nothing would lie


def test_other_tools_show_their_input_once() -> None:
    read = prompt("Read", {"file_path": f"{CWD}/README.md"})
    assert read.content["body"].startswith("🔐 Claude asks to use 📖 Read: README.md\nReact")
    fetch = prompt("WebFetch", {"url": "https://example.org", "prompt": "Summarise"})
    body = fetch.content["body"]
    assert body.startswith("🔐 Claude asks to use 🌐 WebFetch: https://example.org\n```\n{")
    assert '"prompt": "Summarise"' in body


def test_a_long_diff_is_cut_with_a_visible_marker() -> None:
    old = "\n".join(f"line {i}" for i in range(200))
    msg = prompt("Edit", {"file_path": f"{CWD}/a.py", "old_string": old, "new_string": "x"})
    body = msg.content["body"]
    assert body.count("\n-line ") < 40
    assert "… (truncated, " in body and "more lines)" in body


def test_allow_for_this_session_is_offered_only_with_a_rule_to_add() -> None:
    msg = prompt("Bash", {"command": "ls"}, permission_suggestions=[])
    assert "🔁" not in msg.content["body"]
    assert "React ✅ allow once · ❌ deny" in msg.content["body"]


def approval(state: str, **fields: Any) -> Approval:
    return pure.approval(state, **{"decided_by": "@admin:localhost", **fields})


@pytest.mark.parametrize(
    ("state", "reason", "line"),
    [
        ("allowed", None, "✅ Allowed once by Ada"),
        ("allowed_always", None, "🔁 Allowed for this session by Ada"),
        ("denied", "not on main", "❌ Denied by Ada: not on main"),
    ],
)
def test_a_decided_prompt_is_the_outcome_over_the_request(
    state: str, reason: str | None, line: str
) -> None:
    recorded = json.loads((FIXTURES / "PostToolUse.Edit.json").read_text())
    pending = prompt("Edit", recorded["tool_input"]).content
    decided = decisions.settled_content(approval(state, reason=reason), pending, 600, "Ada")
    request = pending[REQUEST_FIELD]
    assert decided["body"] == f"{line}\n{request['body']}"
    pill = '<a href="https://matrix.to/#/@admin:localhost">Ada</a>'
    assert decided["formatted_body"] == (
        f"<p><b>{line.replace('Ada', pill)}</b></p>{request['formatted_body']}"
    )
    # The instructions and the pings are gone; the look stays (not a grey notice).
    assert "React" not in decided["body"] and "@admin:localhost" not in decided["body"]
    assert decided["m.mentions"] == {} and decided["msgtype"] == "m.text"
    assert REQUEST_FIELD not in decided


def test_an_undecided_outcome_names_nobody() -> None:
    pending = prompt("Bash", {"command": "ls"}).content
    ended = decisions.settled_content(approval("timed_out", decided_by=None), pending, 600)
    assert (
        ended["body"]
        == "⌛ No decision within 10 min: Claude Code asks in the terminal\n💻 Bash: ls"
    )
    assert "<a " not in ended["formatted_body"]


def notification(notification_type: str, **ctx: Any) -> list[OutboundMessage]:
    note = load_payload("Notification.json")
    return render({**note, "notification_type": notification_type}, operators=OPS, **ctx)


def test_needs_your_permission_is_folded_into_the_open_request() -> None:
    echo = {"extra": {"echoes_approval": True}}
    assert notification("permission_prompt", **echo) == []
    # Without an open request (no hook, or one decided long before) it is the only ping.
    (alone,) = notification("permission_prompt")
    assert alone.content["m.mentions"] == {"user_ids": list(OPS)}
    assert alone.content["body"] == "🔐 Claude needs your permission — @admin:localhost"
    # Other notifications ping as before.
    (idle,) = notification("idle_prompt", **echo)
    assert idle.content["m.mentions"] == {"user_ids": list(OPS)}
    # With the prompts switched off, nothing else would tell the operators.
    quiet = {"events": {"PermissionRequest": False}}
    (only,) = notification("permission_prompt", mirror=quiet, **echo)
    assert only.content["m.mentions"] == {"user_ids": list(OPS)}


def test_claude_codes_own_patch_keeps_its_line_numbers_and_indentation() -> None:
    recorded = json.loads((FIXTURES / "PostToolUse.Edit.json").read_text())
    (diff,) = render(recorded)
    assert diff.content["body"] == (
        "```diff\n--- a/src/app.py\n+++ b/src/app.py\n@@ -59,4 +59,4 @@\n line 59\n line 60\n"
        " def limit(items):\n-    return items[:10]\n+    return items[:n]\n```"
    )
    # A side with no lines names the line before it, as diff and Claude Code print it.
    removed = {"oldStart": 3, "oldLines": 1, "newStart": 3, "newLines": 0, "lines": ["-gone"]}
    (cut,) = render({**recorded, "tool_response": {"structuredPatch": [removed]}})
    assert "\n@@ -3,1 +2,0 @@\n-gone\n" in cut.content["body"]


def recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def test_an_edit_of_a_file_the_session_read_has_its_real_line_numbers() -> None:
    """Claude Code reads a file before it edits it: applied to what that Read returned, the
    prompt's diff is the one Claude Code's own structuredPatch gives once the edit ran."""
    read, edit = recorded("PostToolUse.Read.json"), recorded("PostToolUse.Edit.json")
    seen = seen_in(read["tool_name"], read["tool_input"], read["tool_response"])
    assert seen is not None and seen[0] == edit["tool_input"]["file_path"]
    ev = event("PermissionRequest", tool_name="Edit", tool_input=edit["tool_input"])
    (msg,) = render(ev, operators=OPS, extra={"seen": seen[1]})
    (ran,) = render(edit)  # the PostToolUse, with Claude Code's structuredPatch
    assert ran.content["body"].startswith("```diff\n--- a/src/app.py\n+++ b/src/app.py\n@@ -59,4")
    assert msg.content["body"] == (
        f"🔐 Claude asks to use ✏️ Edit: src/app.py\n{ran.content['body']}\n"
        "React ✅ allow once · ❌ deny — or reply deny <reason> — @admin:localhost"
    )


def test_what_a_call_shows_or_leaves_of_a_file() -> None:
    part = recorded("PostToolUse.Read.range.json")  # lines 10–14 of 63
    path, seen = seen_in(part["tool_name"], part["tool_input"], part["tool_response"]) or ("", None)
    assert path.endswith("src/app.py") and seen == Seen(
        "line 10\nline 11\nline 12\nline 13\nline 14", 10, whole=False
    )
    edit = recorded("PostToolUse.Edit.json")
    after = seen_in(edit["tool_name"], edit["tool_input"], edit["tool_response"])
    assert after is not None and after[1].text.endswith("def limit(items):\n    return items[:n]\n")
    write = recorded("PostToolUse.Write.json")
    assert seen_in(write["tool_name"], write["tool_input"], {}) == (
        write["tool_input"]["file_path"],
        Seen("print('hi')\n"),
    )
    image = {"type": "image", "file": {"base64": "AAAA", "type": "image/png"}}
    assert seen_in("Read", {"file_path": "/p/x.png"}, image) is None
    assert seen_in("Bash", {"command": "ls"}, {"stdout": ""}) is None


def test_a_partly_read_file_numbers_from_where_the_read_began() -> None:
    seen = Seen("line 10\nline 11\nline 12\nline 13\nline 14", 10, whole=False)
    edit = {"file_path": f"{CWD}/a.py", "old_string": "line 12", "new_string": "line twelve"}
    diff = unified_diff("Edit", edit, CWD, 1, seen=seen)
    assert (
        diff
        == "--- a/a.py\n+++ b/a.py\n@@ -11,3 +11,3 @@\n line 11\n-line 12\n+line twelve\n line 13"
    )
    # A Write replaces the whole file: part of it is not enough to diff against.
    assert (
        unified_diff("Write", {"file_path": f"{CWD}/a.py", "content": "x"}, CWD, 1, seen=seen)
        is None
    )
    whole = unified_diff(
        "Write", {"file_path": f"{CWD}/a.py", "content": "a\nc\n"}, CWD, 0, seen=Seen("a\nb\n")
    )
    assert whole == "--- a/a.py\n+++ b/a.py\n@@ -2,1 +2,1 @@\n-b\n+c"


@pytest.mark.parametrize(
    ("edit", "after"),
    [
        ({"old_string": "c", "new_string": "C"}, "abC b"),
        ({"old_string": "b", "new_string": "B"}, None),  # two matches: Claude Code refuses
        ({"old_string": "b", "new_string": "B", "replace_all": True}, "aBc B"),
        ({"old_string": "zz", "new_string": "y"}, None),  # not in what was seen: it changed
        ({"old_string": "", "new_string": "y"}, None),
    ],
)
def test_an_edit_applies_as_claude_code_applies_it(edit: dict[str, Any], after: str | None) -> None:
    assert applied("Edit", edit, Seen("abc b")) == after
    diff = unified_diff("Edit", {"file_path": "/p/a", **edit}, "/p", 3, seen=Seen("abc b"))
    if after is None:  # the change alone, under a bare @@: where it goes is not known
        assert diff is None or "\n@@\n" in diff
    else:
        assert diff is not None and "\n@@ -1,1 +1,1 @@\n" in diff
