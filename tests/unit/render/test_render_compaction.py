"""One compaction, one notice: PreCompact posts it, SessionStart(compact) and PostCompact edit it.

The recorded payloads (tests/fixtures/hook-payloads, Claude Code 2.1.332) come in the order
PreCompact, SessionStart(compact), PostCompact; 2.1.197 sent PostCompact before the SessionStart.
Delivery tells the later two which notice is theirs (``extra["compaction"]``); the store side of
that is tested in tests/unit/test_compaction_context.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from claude_bridge.render.compaction import summary_text

from .helpers import assert_valid, event, load_recorded, render

PRE_ID = 7
PENDING = {"pre_compact": PRE_ID, "trigger": "manual", "instructions": None, "done": False}
SUMMARY_BODY = (
    "Primary request\n\nThe user asked to fix the parser.\n\n1. Read `src/app.py`\n2. Edited it"
)


def _render(name: str, **extra: Any) -> list[Any]:
    messages = render(load_recorded(name), extra=extra)
    assert_valid(messages)
    return messages


def test_pre_compact_posts_the_notice() -> None:
    (msg,) = _render("PreCompact.json", hook_event_id=PRE_ID)
    assert msg.anchor == "compact:7" and msg.replaces is None
    assert msg.content["body"] == "🗜️ Compacting the conversation (manual)…"
    assert msg.content["formatted_body"] == "🗜️ <b>Compacting the conversation</b> (manual)…"
    assert msg.content["msgtype"] == "m.notice"


def test_session_start_marks_it_done_and_post_compact_adds_the_summary() -> None:
    """2.1.332's order: the SessionStart edits the notice to done, PostCompact edits it again
    with the summary, tags stripped and Markdown rendered. Nothing else is posted."""
    (start,) = _render("SessionStart.compact.json", hook_event_id=8, compaction=PENDING)
    assert start.replaces == "compact:7" and start.anchor is None
    assert start.content["body"] == "🗜️ Conversation compacted (manual)"
    (post,) = _render("PostCompact.json", hook_event_id=9, compaction=PENDING)
    assert post.replaces == "compact:7" and post.anchor is None and post.thread_root is None
    assert post.content["body"] == f"🗜️ Conversation compacted (manual)\n{SUMMARY_BODY}"
    html = post.content["formatted_body"]
    assert html.startswith("<p>🗜️ <b>Conversation compacted</b> (manual)</p>")
    assert "<p><strong>Primary request</strong></p>" in html and "<ol>" in html
    for tag in ("summary", "analysis", "thinking"):
        assert tag not in post.content["body"] and tag not in html


def test_when_post_compact_came_first_session_start_adds_nothing() -> None:
    """2.1.197's order: PostCompact showed the outcome; the SessionStart posts nothing, and
    changes neither topic nor thread state (the session goes on)."""
    assert _render("SessionStart.compact.json", compaction={"done": True}) == []


def test_a_long_summary_goes_into_the_notices_thread() -> None:
    """Previewed there like a tool's output (12 lines), the whole summary attached: nheko and
    older Element X show thread replies in the timeline."""
    parts = "\n".join(f"## {i}. Part\n- point {i}" for i in range(20))
    summary = f"<analysis>a</analysis>\n<summary>\n{parts}\n</summary>"
    data = {**load_recorded("PostCompact.json"), "compact_summary": summary}
    notice, reply, file = render(data, extra={"hook_event_id": 9, "compaction": PENDING})
    assert_valid([notice, reply, file])
    assert notice.replaces == "compact:7"
    assert notice.content["body"] == (
        "🗜️ Conversation compacted (manual) — summary in the thread (40 lines)"
    )
    assert reply.thread_root == "compact:7" and reply.replaces is None
    assert reply.content["body"].startswith("🗜️ Summary\n0. Part\n\n• point 0\n\n1. Part")
    assert "5. Part" in reply.content["body"] and "6. Part" not in reply.content["body"]
    assert reply.content["body"].endswith("… (truncated, 28 more lines — full text attached)")
    assert "<p><strong>5. Part</strong></p>" in reply.content["formatted_body"]
    assert file.thread_root == "compact:7" and file.content["body"] == "compact-summary.md"
    assert file.attachment is not None and file.attachment.data.decode() == parts


def test_without_a_pre_compact_post_compact_is_the_notice() -> None:
    (post,) = _render("PostCompact.json", hook_event_id=9)
    assert post.anchor == "compact:9" and post.replaces is None
    assert post.content["body"].startswith("🗜️ Conversation compacted (manual)\nPrimary request")
    (start,) = _render("SessionStart.compact.json")
    assert start.content["body"] == "🗜️ Session continues after compaction"


def test_instructions_stay_on_the_notice() -> None:
    (pre,) = render(event("PreCompact", trigger="auto", custom_instructions="keep the\ntests"))
    assert pre.content["body"] == "🗜️ Compacting the conversation (automatic) — “keep the tests”…"
    pending = {**PENDING, "trigger": "auto", "instructions": "keep the <b>tests</b>"}
    (post,) = render(event("PostCompact", compact_summary="Short."), extra={"compaction": pending})
    assert post.content["body"] == (
        "🗜️ Conversation compacted (automatic) — “keep the <b>tests</b>”\nShort."
    )
    assert "<i>keep the &lt;b&gt;tests&lt;/b&gt;</i>" in post.content["formatted_body"]


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("<analysis>a</analysis>\n<summary>\nS\n</summary>", "S"),
        ("<summary>unclosed", "unclosed"),
        ("no tags at all", "no tags at all"),
        ("<analysis>only thinking</analysis>", ""),
        ("text</summary>", "text"),
    ],
)
def test_summary_text(raw: str, text: str) -> None:
    assert summary_text(raw) == text
