"""The Markdown export reads like the room: tool calls, their output and diffs, friendly names.

Built from the recorded payloads (tests/fixtures/hook-payloads) through ``render_markdown``, the
function ``export --format markdown`` calls; test_backup.py runs it on an export of both stores.
"""

from __future__ import annotations

import json
from typing import Any

from claude_bridge.export_markdown import render_markdown
from claude_bridge.render.transcript import EXPORT_LINES, tool_title, transcript_entry

from .helpers import load_payload, load_recorded

CWD = "/home/dev/projects/demo-app"


def _pre(post: dict[str, Any]) -> dict[str, Any]:
    pre = {k: v for k, v in post.items() if k not in ("tool_response", "duration_ms")}
    return {**pre, "hook_event_name": "PreToolUse"}


MCP = {
    "hook_event_name": "PostToolUse",
    "tool_name": "mcp__github__create_issue",
    "tool_input": {"title": "Crash on `load`"},
    "tool_use_id": "toolu_mcp",
    "tool_response": [{"type": "text", "text": "Created issue #12"}],
}
REPLY = "## Fixed\n\n| File | Lines |\n|---|---|\n| src/app.py | 2 |\n"


def _export(*payloads: dict[str, Any]) -> str:
    rows = [
        {"id": i, "event_name": p["hook_event_name"], "payload": json.dumps(p),
         "received_at": 1_800_000_000_000 + i * 1000}
        for i, p in enumerate(payloads, 1)
    ]  # fmt: skip
    thread = {"id": "t1", "session_id": "s", "project_path": CWD, "project_name": "demo-app"}
    doc = {"exported_at": "now", "threads": [{"thread": thread, "tables": {"hook_event": rows}}]}
    return render_markdown(doc)


def test_tool_calls_their_output_and_diffs() -> None:
    read_range = load_recorded("PostToolUse.Read.range.json")
    read_all = load_recorded("PostToolUse.Read.json")
    edit = load_recorded("PostToolUse.Edit.json")
    bash = load_payload("PostToolUse.json")
    text = _export(_pre(read_range), read_range, read_all, _pre(edit), edit, bash, MCP)
    # One entry per finished call, at its outcome: its line, then its output.
    assert text.count("📖 **Read**: `src/app.py · lines 10–14`") == 1
    assert "📖 **Read**: `src/app.py · lines 10–14` · 2027-01-15 08:00:02Z" in text
    # Five lines: shown as they are, under what they are.
    lines = "\n".join(f"line {i}" for i in range(10, 15))
    assert f"*lines 10–14 of 63*\n\n```python\n{lines}\n```" in text
    # A whole file: folded, every line there.
    assert "<details><summary>63 lines</summary>\n\n```python\nline 1\n" in text
    assert "line 60\ndef limit(items):\n    return items[:10]\n```\n\n</details>" in text
    # The edit as the room shows it: Claude Code's own hunk, indentation kept.
    assert text.count("✏️ **Edit**: `src/app.py`") == 1
    assert "<details><summary>diff · 8 lines</summary>\n\n```diff\n--- a/src/app.py\n" in text
    assert "@@ -59,4 +59,4 @@\n line 59\n line 60\n def limit(items):\n" in text
    assert "-    return items[:10]\n+    return items[:n]\n```" in text
    assert "💻 **Bash**: `echo hello-from-tool`" in text  # no PreToolUse: the line comes with it
    assert "```console\n$ echo hello-from-tool\nhello-from-tool\n```" in text
    # An MCP tool by the name the room gives it.
    assert "🔌 **github › create\\_issue**: `` Crash on `load` ``" in text
    assert "Created issue #12" in text and "mcp__" not in text


def test_conversation_and_compaction() -> None:
    stream = load_payload("MessageDisplay.json")
    stop = {**load_payload("Stop.json"), "last_assistant_message": REPLY}
    post = load_recorded("PostCompact.json")
    text = _export(load_payload("UserPromptSubmit.json"), stream, stop, post)
    assert "🧑‍💻 **Prompt** · " in text and "\n\n> " in text
    assert f"🤖 **Claude** · 2027-01-15 08:00:03Z · not in Matrix yet\n\n{REPLY.strip()}" in text
    assert "All done." not in text  # the streamed chunk: the Stop carries the reply
    assert "🗜️ **Conversation compacted** (manual)" in text
    assert "<details><summary>summary</summary>\n\n## Primary request\n" in text
    assert "<analysis>" not in text and "</summary>\n</details>" not in text


def test_long_output_is_capped() -> None:
    out = "\n".join(f"row {i}" for i in range(EXPORT_LINES + 20))
    post = {**load_payload("PostToolUse.json"), "tool_response": {"stdout": out}}
    entry = transcript_entry("PostToolUse", post, CWD)
    assert entry is not None
    assert f"row {EXPORT_LINES - 2}\n… (21 more lines)\n```" in entry.body


def test_a_call_keeps_the_matrix_ids_of_its_line() -> None:
    pre, post = _pre(load_payload("PostToolUse.json")), load_payload("PostToolUse.json")
    failed = {**_pre(post), "hook_event_name": "PostToolUseFailure", "error": "Exit code 1"}
    rows = [
        {"id": i, "event_name": p["hook_event_name"], "payload": json.dumps(p),
         "received_at": 1_800_000_000_000 + i}
        for i, p in enumerate([pre, post, {**pre, "tool_use_id": "x"}, failed | {"tool_use_id": "x"}], 1)
    ]  # fmt: skip
    sent = [{"hook_event_id": 1, "event_id": "$line"}, {"hook_event_id": 2, "event_id": "$out"}]
    thread = {"id": "t1", "session_id": "s", "project_path": CWD}
    tables = {"hook_event": rows, "sent_event": sent}
    text = render_markdown({"threads": [{"thread": thread, "tables": tables}]})
    assert text.count("💻 **Bash**") == 2
    assert "💻 **Bash**: `echo hello-from-tool` · 2027-01-15 08:00:00Z · `$line`, `$out`" in text
    assert "❌ 💻 **Bash**: `echo hello-from-tool` · " in text and "Exit code 1" in text


def test_pruned_and_unknown_events() -> None:
    pruned = transcript_entry("Stop", {"pruned": True}, CWD)
    assert pruned is not None and pruned.title == "· **Stop** (payload pruned by retention)"
    unknown = transcript_entry("Some*Event", {}, CWD)
    assert unknown is not None and unknown.title == "⚙️ **Some\\*Event**"
    assert transcript_entry("PostToolBatch", {}, CWD) is None


def test_tool_title_escapes_and_relativises() -> None:
    assert tool_title("Grep", {"pattern": "a`b", "path": CWD}, CWD) == "🔍 **Grep**: ``a`b``"
    assert tool_title("Write", {"file_path": "/etc/x"}, CWD) == "📝 **Write**: `/etc/x`"
