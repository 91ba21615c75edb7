"""Catch-up from the transcript: reading it, telling what the room lacks, and what gets posted."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from claude_bridge.catchup import (
    CATCHUP_EVENT,
    CATCHUP_KEY,
    CatchUp,
    GapWatch,
    GapWindow,
    covered,
    missing_items,
    shown_by,
    synthetic_events,
    with_catchup_marker,
)
from claude_bridge.catchup.transcript import parse_items, read_tail
from claude_bridge.config import CatchupConfig
from claude_bridge.events.parse import parse_hook_event
from claude_bridge.hooks.limits import TokenBuckets
from claude_bridge.render import RenderContext, render_event
from claude_bridge.slots import SendSlots
from tests.images import b64, png

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "transcript.jsonl"
SESSION = "3eb5f21d-5dcb-43a8-9ab8-939331f73b6b"


def items() -> list[Any]:
    return parse_items(FIXTURE.read_bytes(), SESSION)


def test_the_transcript_becomes_what_a_room_shows() -> None:
    got = [(i.kind, i.text or i.tool_name) for i in items()]
    assert got == [
        ("prompt", "fix the failing parser test"),
        ("text", "Let me run the parser tests first."),
        ("tool_use", "Bash"),
        ("tool_result", "F.\nFAILED tests/test_parser.py::test_empty_line - IndexError\n1 failed, 1 passed"),
        ("tool_use", "Edit"),
        ("tool_result", "The file /home/dev/projects/demo-app/src/parser.py has been updated."),
        ("text", "Fixed: empty lines are now skipped, and **both tests pass**."),
        ("prompt", "now commit it"),
    ]  # fmt: skip
    # Left out: summary, snapshot, slash-command plumbing, meta context, thinking, the subagent's
    # side chain, another session's line, a system line and the half-written last line.
    result = items()[3]
    assert result.is_error and result.tool_name == "Bash" and result.tool_use_id
    assert items()[4].tool_input["file_path"].endswith("parser.py")


def test_reading_the_tail_starts_at_a_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(FIXTURE.read_bytes())
    data, cut = read_tail(path, 1500)
    assert cut and len(data) <= 1500
    assert all(json.loads(line) for line in data.splitlines()[:-1])  # whole lines only
    data, cut = read_tail(path, 10**9)
    assert not cut and data == FIXTURE.read_bytes()


def stored(*events: dict[str, Any]) -> list[dict[str, Any]]:
    return list(events)


PROMPT = {"hook_event_name": "UserPromptSubmit", "prompt": "fix the failing parser test"}
BASH = {"hook_event_name": "PreToolUse", "tool_use_id": "toolu_01parser000000000000001"}
BASH_DONE = {
    "hook_event_name": "PostToolUseFailure",
    "tool_use_id": "toolu_01parser000000000000001",
}
COMMIT = {"hook_event_name": "UserPromptSubmit", "prompt": "now commit it"}


def test_the_gap_is_what_follows_the_last_shown_item_up_to_the_current_event() -> None:
    # Shown up to the failed Bash call; then the bridge was down; "now commit it" arrives live.
    gap = missing_items(items(), shown_by(stored(PROMPT, BASH, BASH_DONE)), COMMIT)
    assert [(i.kind, i.tool_name or i.text[:5]) for i in gap] == [
        ("tool_use", "Edit"),
        ("tool_result", "Edit"),
        ("text", "Fixed"),
    ]
    # The first event back is the Edit's result: its call is in the gap, its result is not.
    edit_done = {"hook_event_name": "PostToolUse", "tool_use_id": "toolu_01edit00000000000000002"}
    gap = missing_items(items(), shown_by(stored(PROMPT, BASH, BASH_DONE)), edit_done)
    assert [(i.kind, i.tool_name) for i in gap] == [("tool_use", "Edit")]
    # The intermediate text before the Bash call was never mirrored: not part of the gap.
    # Nothing missing: nothing posted (a false alarm costs one read).
    everything = stored(PROMPT, BASH, BASH_DONE, {"hook_event_name": "PostToolUse",
        "tool_use_id": "toolu_01edit00000000000000002"}, {"hook_event_name": "Stop",
        "last_assistant_message": "Fixed: empty lines are now skipped, and **both tests pass**."})  # fmt: skip
    assert missing_items(items(), shown_by(everything), COMMIT) == []


def test_a_repeated_prompt_that_was_lost_is_not_taken_for_the_earlier_one() -> None:
    lines = [
        _entry("user", "continue", "u1"),
        _entry("assistant", [{"type": "text", "text": "first answer"}], "a1"),
        _entry("user", "continue", "u2"),
        _entry("assistant", [{"type": "text", "text": "second answer"}], "a2"),
    ]
    got = parse_items("\n".join(lines).encode(), SESSION)
    shown = shown_by([{"hook_event_name": "UserPromptSubmit", "prompt": "continue"},
                      {"hook_event_name": "Stop", "last_assistant_message": "first answer"}])  # fmt: skip
    assert covered(got, shown) == [True, True, False, False]
    gap = missing_items(got, shown, {"hook_event_name": "Notification"})
    assert [i.uuid for i in gap] == ["u2", "a2"]
    # Items an earlier catch-up posted are shown too, whatever their content.
    again = shown_by([*shown_by_rows(gap)])
    assert missing_items(got, again, {}) == []


def shown_by_rows(gap: list[Any]) -> list[dict[str, Any]]:
    return [{"hook_event_name": "Stop", CATCHUP_KEY: i.uuid} for i in gap]


def test_streamed_replies_count_as_shown() -> None:
    chunks = [
        {"hook_event_name": "MessageDisplay", "message_id": "m", "index": 1, "delta": "tests pass**."},
        {"hook_event_name": "MessageDisplay", "message_id": "m", "index": 0,
         "delta": "Fixed: empty lines are now skipped, and **both "},
    ]  # fmt: skip
    assert "Fixed: empty lines are now skipped, and **both tests pass**." in shown_by(chunks).texts


def _entry(kind: str, content: Any, uuid: str) -> str:
    return json.dumps(
        {"type": kind, "sessionId": SESSION, "uuid": uuid, "timestamp": "2026-11-24T09:00:00Z",
         "message": {"role": kind, "content": content}}
    )  # fmt: skip


def test_synthetic_events_parse_and_render() -> None:
    event = parse_hook_event({"session_id": SESSION, "hook_event_name": "UserPromptSubmit",
                              "cwd": "/home/dev/projects/demo-app"})  # fmt: skip
    out = synthetic_events(items(), 3, event)
    assert out[0]["hook_event_name"] == CATCHUP_EVENT and out[0]["recovered"] == len(items())
    names = [e["hook_event_name"] for e in out[1:]]
    assert names == ["UserPromptSubmit", "Stop", "PreToolUse", "PostToolUseFailure",
                     "PreToolUse", "PostToolUse", "Stop", "UserPromptSubmit"]  # fmt: skip
    render = with_catchup_marker(render_event)
    ctx = RenderContext(thread_id=SESSION, project="demo-app", title="t")
    for data in out:
        messages = render(parse_hook_event(json.loads(json.dumps(data))), ctx)
        assert messages, data
    marker = render(parse_hook_event(out[0]), ctx)[0].content
    assert marker["body"].startswith("⏪ Caught up after an outage: the bridge missed 8 items")
    assert "from 09:00:01 to 09:00:20 UTC" in marker["body"] and "3 older ones" in marker["body"]
    assert marker["m.mentions"] == {} and marker["msgtype"] == "m.notice"


def test_only_transcripts_under_the_configured_dirs_are_read(tmp_path: Path) -> None:
    root = tmp_path / "projects"
    (root / "p").mkdir(parents=True)
    good = root / "p" / "s.jsonl"
    good.write_text("")
    outside = tmp_path / "secret.jsonl"
    outside.write_text("")
    (root / "p" / "link.jsonl").symlink_to(outside)
    (root / "p" / "config.yaml").write_text("")
    catchup = CatchUp(CatchupConfig(transcript_dirs=[str(root)]), db=None)  # type: ignore[arg-type]

    def path_of(value: str | None) -> Path | None:
        data = {"session_id": "s", "hook_event_name": "Stop", "transcript_path": value}
        return catchup.transcript_file(parse_hook_event(data))

    assert path_of(str(good)) == good.resolve()
    for bad in (str(outside), str(root / "p" / "link.jsonl"), str(root / "p" / "config.yaml"),
                "p/s.jsonl", str(root / "p" / ".." / ".." / "secret.jsonl"), None, "",
                str(root / "p" / "missing.jsonl")):  # fmt: skip
        assert path_of(bad) is None, bad
    assert os.path.exists(outside)


def test_gap_watch_suspects_new_threads_and_failures_only() -> None:
    watch = GapWatch()
    watch.boot = GapWindow(1000, 10)
    assert watch.window_for("t") == GapWindow(1000, 10)  # not seen by this process yet
    watch.accepted("t", 11)
    assert watch.window_for("t") is None
    watch.failed(5000)
    watch.failed(6000)  # the same outage
    assert watch.window_for("t") == GapWindow(5000, 11)  # the first failure since its last event
    watch.accepted("t", 12)
    assert watch.window_for("t") is None
    watch.accepted("u", 13)
    for n in range(GapWatch.MAX_WINDOWS + 5):  # a flapping database: bounded memory
        watch.failed(7000 + n)
        watch.accepted("other", 14 + n)
    assert watch.window_for("t") == GapWindow(1000, 10)  # forgotten: back to the process start
    assert watch.window_for("other") is None


def test_new_threads_are_limited_per_token_and_refill() -> None:
    now = [0.0]
    buckets = TokenBuckets(6, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(6)] == [0.0] * 6
    assert buckets.take("a") == pytest.approx(10.0)  # 6 per minute: one every 10 s
    assert buckets.take("b") == 0.0
    now[0] = 10.0
    assert buckets.take("a") == 0.0 and buckets.take("a") > 0
    assert TokenBuckets(0).take("a") == 0.0  # 0: no limit


async def test_a_hung_send_gives_its_slot_back_after_its_patience() -> None:
    slots = SendSlots(1, patience=0.05)
    hung = asyncio.Event()
    order: list[str] = []

    async def stuck() -> None:
        async with slots.slot():
            order.append("stuck")
            await hung.wait()
        order.append("stuck done")

    async def healthy() -> None:
        async with slots.slot():
            order.append("healthy")

    task = asyncio.create_task(stuck())
    await asyncio.sleep(0)
    await asyncio.wait_for(healthy(), 1.0)  # would wait for ever on a plain semaphore
    assert slots.overdue == 1
    hung.set()
    await task
    assert order == ["stuck", "healthy", "stuck done"] and slots.overdue == 0
    async with slots.slot():  # the slot the overdue send gave back is usable again, once
        assert slots.locked()


def test_images_a_tool_result_held_are_posted_by_catch_up() -> None:
    """A transcript holds a tool result's images as the content blocks Claude saw: catch-up posts
    them as the live PostToolUse would (m.image), up to what one call shows; the rest, and data
    that is no base64 source, stay ``[image]`` in the text."""
    image = png(6, 4)
    secret = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": b64(image)}}  # fmt: skip
    stamp = "2026-12-07T09:00:00.000Z"

    def line(kind: str, uuid: str, content: list[dict[str, Any]]) -> bytes:
        entry = {"type": kind, "uuid": uuid, "sessionId": SESSION, "timestamp": stamp,
                 "message": {"role": kind, "content": content}}  # fmt: skip
        return json.dumps(entry).encode()

    read = {"type": "tool_use", "id": "toolu_1", "name": "Read",
            "input": {"file_path": "/home/dev/projects/demo-app/plot.png"}}  # fmt: skip
    many = {"type": "tool_use", "id": "toolu_2", "name": "mcp__browser__shots", "input": {}}
    odd = {"type": "image", "source": {"type": "url", "url": "https://example.org/x.png"}}
    transcript = b"\n".join([
        line("assistant", "a1", [read]),
        line("user", "u1", [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [block]}]),
        line("assistant", "a2", [many]),
        line("user", "u2", [{"type": "tool_result", "tool_use_id": "toolu_2",
                             "content": [{"type": "text", "text": f"ten shots {secret}"}, odd,
                                         *[block] * 10]}]),
    ])  # fmt: skip
    parsed = parse_items(transcript, SESSION)
    results = [i for i in parsed if i.kind == "tool_result"]
    assert [len(r.images) for r in results] == [1, 8]
    assert results[0].text == ""
    assert results[1].text == f"ten shots {secret}\n[image]\n[image]\n[image]"

    event = parse_hook_event({"session_id": SESSION, "hook_event_name": "UserPromptSubmit",
                              "cwd": "/home/dev/projects/demo-app"})  # fmt: skip
    ctx = RenderContext(thread_id=SESSION, project="demo-app", title="t")
    posted, redacted = [], 0
    for data in synthetic_events(parsed, 0, event)[1:]:
        for message in render_event(parse_hook_event(json.loads(json.dumps(data))), ctx):
            assert secret not in json.dumps(message.content)  # the text beside images is scrubbed
            redacted += "ten shots [redacted]" in json.dumps(message.content)
            if message.attachment is not None:
                posted.append((message.content["msgtype"], message.attachment.filename,
                               message.attachment.data))  # fmt: skip
    assert redacted and posted[0] == ("m.image", "plot.png", image)
    assert len(posted) == 9 and all(p[2] == image for p in posted)
