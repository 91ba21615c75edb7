"""What may be merged, and that a merged message can be read back and edited line by line."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from claude_bridge import coalesce
from claude_bridge.render.content import message
from claude_bridge.render.messages import Attachment, OutboundMessage
from claude_bridge.store.merged_lines import dump_lines, load_lines


def notice(body: str, html: str | None = None, anchor: str | None = "tool:a") -> OutboundMessage:
    return OutboundMessage(content=message(body, html), anchor=anchor)


def test_only_plain_one_line_notices_are_mergeable() -> None:
    assert coalesce.mergeable(notice("💻 Bash: ls"))
    assert not coalesce.mergeable(notice("two\nlines"))
    assert not coalesce.mergeable(notice("x" * 2000))
    assert not coalesce.mergeable(OutboundMessage(content=message("reply", msgtype="m.text")))
    assert not coalesce.mergeable(
        OutboundMessage(content=message("ping", mentions=["@alice:localhost"]))
    )
    assert not coalesce.mergeable(OutboundMessage(content=message("x"), thread_root="tool:a"))
    assert not coalesce.mergeable(OutboundMessage(content=message("x"), replaces="tool:a"))
    assert not coalesce.mergeable(
        OutboundMessage(content=message("x"), attachment=Attachment(b"x", "x.txt"))
    )
    assert not coalesce.mergeable(
        OutboundMessage(content={"name": "x"}, event_type="m.room.name", state_key="")
    )


def test_thread_replies_may_follow_a_group_but_edits_may_not() -> None:
    assert coalesce.follows_group(OutboundMessage(content=message("out"), thread_root="tool:a"))
    assert not coalesce.follows_group(OutboundMessage(content=message("x"), replaces="tool:a"))
    assert not coalesce.follows_group(notice("line"))


def test_merged_content_reads_back_and_edits_one_line() -> None:
    lines = [
        coalesce.line_of(1, 0, notice("💻 Bash: ls", "💻 <b>Bash</b>: <code>ls</code>", "tool:1")),
        coalesce.line_of(2, 0, notice("📖 Read: a & b", anchor="tool:2")),
        coalesce.line_of(3, 0, notice("🔍 Grep: x", anchor=None)),
    ]
    content = coalesce.merged_content(lines)
    assert content["body"] == "💻 Bash: ls\n📖 Read: a & b\n🔍 Grep: x"
    assert content["formatted_body"].split("<br>")[1] == "📖 Read: a &amp; b"
    assert coalesce.lines_from_content(content) == lines
    assert load_lines(dump_lines(lines)) == lines
    failed = notice("❌ Read: a & b — gone", anchor=None)
    edited = coalesce.replace_line(lines, "tool:2", failed)
    assert [x.body for x in edited] == ["💻 Bash: ls", "❌ Read: a & b — gone", "🔍 Grep: x"]
    assert edited[0] == lines[0] and edited[2] == lines[2]
    assert coalesce.lines_from_content({"body": "x", "msgtype": "m.notice"}) is None


def test_a_reply_under_a_merged_message_leads_with_its_line() -> None:
    line = coalesce.line_of(1, 0, notice("💻 Bash: ls", "💻 <code>ls</code>"))
    reply = coalesce.in_reply_to_line({"msgtype": "m.notice", "body": "a\nb"}, line)
    assert reply["body"] == "↳ 💻 Bash: ls\na\nb"
    assert reply["formatted_body"] == "<p>↳ 💻 <code>ls</code></p>a<br>b"
    file = {"msgtype": "m.file", "body": "out.txt"}
    assert coalesce.in_reply_to_line(file, line) is file


@given(st.lists(st.text(min_size=1, max_size=80).filter(lambda s: "\n" not in s), max_size=30))
def test_any_lines_survive_the_round_trip(bodies: list[str]) -> None:
    lines = [coalesce.line_of(i, 0, notice(b, anchor=f"tool:{i}")) for i, b in enumerate(bodies)]
    mergeable = [x for x in lines if "<br>" not in x.html]
    if len(mergeable) != len(lines) or not lines:
        return
    assert coalesce.lines_from_content(coalesce.merged_content(lines)) == lines


def test_small_outputs_under_a_merged_message_share_a_reply() -> None:
    roots = {"tool:1", "tool:2"}
    out = OutboundMessage(content=message("ok"), thread_root="tool:1")
    assert coalesce.mergeable_reply(out, roots)
    assert not coalesce.mergeable_reply(
        OutboundMessage(content=message("ok"), thread_root="tool:9"), roots
    )
    assert not coalesce.mergeable_reply(
        OutboundMessage(content=message("x" * 5000), thread_root="tool:1"), roots
    )
    assert not coalesce.mergeable_reply(
        OutboundMessage(
            content=message("f"), thread_root="tool:1", attachment=Attachment(b"", "f")
        ),
        roots,
    )
    one = coalesce.line_of(1, 0, notice("💻 Bash: ls", anchor="tool:1"))
    two = coalesce.line_of(2, 0, notice("💻 Bash: pwd", anchor="tool:2"))
    content = coalesce.merged_replies(
        [
            coalesce.Reply(1, 1, message("a.txt"), one),
            coalesce.Reply(2, 1, message("/home", "<code>/home</code>"), two),
        ]
    )
    assert content["body"] == "↳ 💻 Bash: ls\na.txt\n\n↳ 💻 Bash: pwd\n/home"
    assert content["formatted_body"].endswith("<p>↳ 💻 Bash: pwd</p><code>/home</code>")
    assert coalesce.parts_from_content(content) == [(1, 1), (2, 1)]
    assert coalesce.parts_from_content({"body": "x"}) is None
