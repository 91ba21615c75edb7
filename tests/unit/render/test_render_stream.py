"""MessageDisplay streams into one edited message; Stop does not repeat a streamed reply."""

from __future__ import annotations

from .helpers import event, load_payload, render


def test_first_chunk_is_sent_and_anchored() -> None:
    (msg,) = render(load_payload("MessageDisplay.json"))
    assert msg.anchor == "stream:20ff12a8-7324-46f7-9c7f-c225cab96149"
    assert msg.replaces is None
    assert msg.content == {"msgtype": "m.text", "body": "All done.", "m.mentions": {}}


def test_later_chunks_edit_with_the_whole_text() -> None:
    text = "Here is the plan:\n\n1. **read**\n2. write"
    (msg,) = render(
        event("MessageDisplay", message_id="m1", index=3, delta="2. write"), stream_text=text
    )
    assert msg.replaces == "stream:m1" and msg.anchor is None
    # The body is the same text without Markdown's markers (room list previews, notifications).
    assert msg.content["body"] == "Here is the plan:\n\n1. read\n2. write"
    assert "<ol>" in msg.content["formatted_body"]
    assert "<strong>read</strong>" in msg.content["formatted_body"]


def test_without_stream_text_the_delta_is_shown() -> None:
    (msg,) = render(event("MessageDisplay", message_id="m1", index=0, delta="Hel"))
    assert msg.content["body"] == "Hel"


def test_empty_first_chunk_is_a_placeholder() -> None:
    (msg,) = render(event("MessageDisplay", message_id="m1", index=0, delta=""))
    assert msg.content["body"] == "…"


def test_stop_after_a_matching_stream_posts_nothing() -> None:
    stop = load_payload("Stop.json")
    assert render(stop, stream_anchor="stream:m1", stream_text="All done.\n") == []


def test_stop_fixes_a_stream_that_differs() -> None:
    stop = load_payload("Stop.json")
    (msg,) = render(stop, stream_anchor="stream:m1", stream_text="All do")
    assert msg.replaces == "stream:m1"
    assert msg.content["body"] == "All done."


def test_stop_without_stream_posts_the_reply() -> None:
    (msg,) = render(load_payload("Stop.json"), stream_text="ignored")
    assert msg.replaces is None and msg.content["body"] == "All done."


def test_continuation_stop_is_rendered() -> None:
    (msg,) = render(load_payload("Stop.stop_hook_active.json"))
    assert msg.content["body"] == "Bye!"


def test_subagent_stop_ignores_the_main_stream() -> None:
    (msg,) = render(load_payload("SubagentStop.json"), stream_anchor="stream:m1")
    assert msg.replaces is None
    assert msg.sender == "agent-a7913635a7accad94"


def test_huge_streamed_reply_gets_its_attachment_at_stop() -> None:
    text = "word " * 20_000
    stop = {**load_payload("Stop.json"), "last_assistant_message": text}
    (file,) = render(stop, stream_anchor="stream:m1", stream_text=text)
    assert file.attachment is not None and file.attachment.data.decode() == text


def test_empty_stop_posts_nothing() -> None:
    assert render({**load_payload("Stop.json"), "last_assistant_message": None}) == []


def test_context_fields_may_come_in_extra() -> None:
    # Delivery may pass these in RenderContext.extra; the dedicated fields win when set.
    (msg,) = render(
        event("MessageDisplay", message_id="m1", index=2, delta="c"), extra={"stream_text": "abc"}
    )
    assert msg.content["body"] == "abc"
    stop = load_payload("Stop.json")
    assert render(stop, extra={"stream_anchor": "stream:m1", "stream_text": "All done."}) == []
    prompt = load_payload("UserPromptSubmit.json")
    assert [m.event_type for m in render(prompt, extra={"title": "x"})] == ["m.room.message"]
    assert len(render(prompt, extra={"title": None})) == 2
    (msg,) = render(
        event("MessageDisplay", message_id="m1", index=2, delta="c"),
        stream_text="field",
        extra={"stream_text": "extra"},
    )
    assert msg.content["body"] == "field"


def test_stop_fixing_a_huge_stream_attaches_the_reply() -> None:
    text = "word " * 20_000
    stop = {**load_payload("Stop.json"), "last_assistant_message": text}
    edit, file = render(stop, stream_anchor="stream:m1", stream_text="word")
    assert edit.replaces == "stream:m1" and "full text attached" in edit.content["body"]
    assert file.replaces is None and file.anchor is None
    assert file.attachment is not None and file.attachment.data.decode() == text
