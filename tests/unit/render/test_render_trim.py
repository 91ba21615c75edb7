"""Size limits: long text is cut visibly, the full text is attached, nothing exceeds 64 KiB."""

from __future__ import annotations

import json

from claude_bridge.render.trim import Cut, content_size, cut, fit, limit, marker

from .helpers import assert_valid, event, render

BIG = "\n".join(f"{i:05d} " + "output " * 12 for i in range(5000))


def _bash(stdout: str, **fields: object) -> list:
    return render(
        event(
            "PostToolUse",
            tool_name="Bash",
            tool_use_id="toolu_big",
            tool_input={"command": "make build"},
            tool_response={"stdout": stdout, "stderr": "", "interrupted": False},
        ),
        **fields,
    )


def test_big_tool_output_is_trimmed_with_marker_and_attached() -> None:
    messages = _bash(BIG)
    assert_valid(messages)
    assert len(messages) == 2
    trimmed, file = messages
    body = trimmed.content["body"]
    assert body.startswith("```console\n$ make build\n00000 output")
    assert "… (truncated, " in body and "more lines — full text attached)" in body
    assert "truncated" in trimmed.content["formatted_body"]
    assert len(body.splitlines()) < 20  # max_inline_lines (12) plus frame
    assert trimmed.thread_root == file.thread_root == "tool:toolu_big"
    assert file.anchor is None
    assert file.content["msgtype"] == "m.file"
    assert file.content["body"] == file.content["filename"] == "bash-output.txt"
    assert file.attachment is not None
    assert file.attachment.mimetype == "text/plain"
    assert file.attachment.data.decode() == "$ make build\n" + BIG
    assert file.content["info"] == {"mimetype": "text/plain", "size": len(file.attachment.data)}


def test_marker_counts_omitted_lines() -> None:
    stdout = "\n".join(f"line {i}" for i in range(100))
    body = _bash(stdout)[0].content["body"]
    shown = [line for line in body.splitlines() if line.startswith("line ")]
    assert len(shown) == 11  # "$ make build" is the first of the 12 lines
    assert "… (truncated, 89 more lines — full text attached)" in body


def test_short_output_is_not_attached() -> None:
    messages = _bash("ok\n")
    assert len(messages) == 1
    assert "truncated" not in messages[0].content["body"]


def test_no_attachment_when_disabled() -> None:
    messages = _bash(BIG, mirror={"attach_full_output": False})
    assert len(messages) == 1
    assert "truncated" in messages[0].content["body"]
    assert "attached" not in messages[0].content["body"]


def test_one_huge_line_is_cut_by_bytes() -> None:
    messages = _bash("<" * 200_000)
    assert_valid(messages)
    body = messages[0].content["body"]
    assert "more characters — full text attached)" in body
    assert content_size(messages[0].content) <= 49_152


def test_huge_reply_fits_and_is_attached() -> None:
    reply = "# Report\n\n" + "\n".join(f"- item **{i}** <&>" for i in range(20_000))
    messages = render(event("Stop", last_assistant_message=reply))
    assert_valid(messages)
    msg, file = messages
    assert content_size(msg.content) <= 49_152
    assert msg.content["formatted_body"].count("<li>") == msg.content["formatted_body"].count(
        "</li>"
    )
    assert "full text attached" in msg.content["body"]
    assert file.attachment is not None and file.attachment.filename == "reply.md"
    assert file.attachment.data.decode() == reply


def test_stream_edit_uses_half_budget_and_never_attaches() -> None:
    text = "word " * 40_000
    messages = render(
        event("MessageDisplay", message_id="m1", index=5, delta="word "), stream_text=text
    )
    assert len(messages) == 1
    assert messages[0].replaces == "stream:m1"
    assert messages[0].attachment is None
    assert content_size(messages[0].content) <= 49_152 // 2
    assert "truncated" in messages[0].content["body"]


def test_cut_prefers_line_ends() -> None:
    assert cut("aaaa\nbbbb\ncccc", 12) == Cut("aaaa\nbbbb", omitted_lines=1, omitted_chars=5)
    assert cut("short", 10) == Cut("short")
    assert cut("x" * 10, 4) == Cut("xxxx", omitted_lines=1, omitted_chars=6)
    assert marker(cut("x" * 10, 4), attached=False) == "… (truncated, 6 more characters)"


def test_fit_finds_longest_prefix_under_budget() -> None:
    text = "\n".join("line" for _ in range(1000))

    def build(c: Cut) -> dict[str, object]:
        return {"body": c.text + (marker(c, False) if c.truncated else "")}

    content, shown = fit(text, build, 1000)
    assert content_size(content) <= 1000
    assert shown.truncated
    longer = cut(text, len(shown.text) + 5)
    assert content_size(build(longer)) > 1000 or longer.text == shown.text


def test_limit_is_a_last_resort() -> None:
    content = {"msgtype": "m.notice", "body": "x" * 100_000, "formatted_body": "y", "format": "f"}
    limited = limit(content, 10_000)
    assert content_size(limited) <= 10_000
    assert "formatted_body" not in limited
    assert json.dumps(limited)
