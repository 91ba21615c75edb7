"""Where a session stands, as its room tells it: transitions, topic, thread state, change-only."""

from __future__ import annotations

from typing import Any

import pytest

from claude_bridge.events.parse import parse_hook_event
from claude_bridge.render import RenderContext, render_event
from claude_bridge.render.room_status import room_status, with_room_status
from claude_bridge.room_state import (
    APPROVAL,
    ENDED,
    THREAD_STATE,
    WAITING,
    WORKING,
    activity_after,
    merged,
    starting_activity,
    thread_state,
    topic_content,
    topic_text,
)

SESSION = "3eb5f21d-5dcb-43a8-9ab8-939331f73b6b"
CWD = "/home/dev/projects/demo-app"


def ev(name: str, **fields: Any) -> Any:
    return parse_hook_event({"session_id": SESSION, "cwd": CWD, "hook_event_name": name, **fields})


def ctx(activity: str | None, **extra: Any) -> RenderContext:
    fields = {"session_id": SESSION, "cwd": CWD, "activity": activity, **extra}
    return RenderContext(thread_id=SESSION, project="demo-app", extra=fields)


@pytest.mark.parametrize(
    ("event", "after"),
    [
        (ev("SessionStart", source="startup"), WAITING),
        (ev("SessionStart", source="resume"), WAITING),
        (ev("SessionStart", source="compact"), None),
        (ev("UserPromptSubmit", prompt="hi"), WORKING),
        (ev("PreToolUse", tool_name="Bash"), WORKING),
        (ev("PostToolUse", tool_name="Bash"), WORKING),
        (ev("PermissionRequest", tool_name="Bash"), APPROVAL),
        (ev("Notification", message="m", notification_type="permission_prompt"), APPROVAL),
        (ev("Notification", message="m", notification_type="idle_prompt"), WAITING),
        (ev("Notification", message="m", notification_type="auth_success"), None),
        (ev("Stop", last_assistant_message="done"), WAITING),
        (ev("StopFailure", error="rate_limit"), WAITING),
        (ev("SubagentStop", agent_id="a1"), None),
        (ev("PreCompact", trigger="manual"), None),
        (ev("SessionEnd", reason="other"), ENDED),
        (ev("SomethingNew"), None),
    ],
)
def test_what_each_event_says(event: Any, after: str | None) -> None:
    assert activity_after(event, WORKING) == after


def test_an_ended_session_stays_ended_until_it_starts_again() -> None:
    assert activity_after(ev("PostToolUse", tool_name="Bash"), ENDED) is None
    assert activity_after(ev("Stop"), ENDED) is None
    assert activity_after(ev("SessionStart", source="resume"), ENDED) == WAITING


def test_a_new_room_starts_where_its_first_event_leaves_the_session() -> None:
    assert starting_activity(ev("SessionStart", source="startup")) == WAITING
    assert starting_activity(ev("SessionStart", source="compact")) == WAITING
    assert starting_activity(ev("PreToolUse", tool_name="Read")) == WORKING
    assert starting_activity(ev("PreCompact")) == WORKING
    assert starting_activity(None) == WORKING


def test_topics_are_short_while_running_and_say_how_to_go_on_once_ended() -> None:
    assert topic_text(WORKING, "demo-app", SESSION, CWD) == "⚙️ Working · demo-app · session 3eb5f2"
    assert topic_text(WAITING, "demo-app", SESSION, CWD).startswith("💬 Waiting for you · ")
    assert topic_text(APPROVAL, None, SESSION, None) == "🔐 Waiting for approval · session 3eb5f2"
    assert topic_text(ENDED, "demo-app", SESSION, CWD) == (
        f"⏹️ Ended · go on with: claude --resume {SESSION} (in {CWD})"
    )
    assert topic_text(ENDED, "demo-app", SESSION, CWD, archived=True).startswith("📦 Archived")


def test_topic_content_is_the_spec_shape() -> None:
    # Matrix 1.15 (MSC3765): m.topic is an object holding an m.text content block, not a list.
    assert topic_content("t") == {
        "topic": "t",
        "m.topic": {"m.text": [{"mimetype": "text/plain", "body": "t"}]},
    }


def test_thread_state_is_whole_and_leaves_out_what_is_unknown() -> None:
    assert thread_state(session_id=SESSION, project="p", cwd=CWD, activity=WAITING) == {
        "session_id": SESSION,
        "project": "p",
        "cwd": CWD,
        "status": "active",
        "activity": WAITING,
    }
    ended = thread_state(session_id=SESSION, project=None, cwd=None, activity=ENDED)
    assert ended == {"session_id": SESSION, "status": "ended", "activity": ENDED}
    archived = thread_state(
        session_id=SESSION, project="p", cwd=None, activity=WORKING, archived=True
    )
    assert archived["status"] == "ended" and archived["archived"] is True


def test_merged_keeps_what_the_update_does_not_know() -> None:
    current = {"session_id": SESSION, "cwd": CWD, "project": "p", "status": "active", "x": 1}
    assert merged(current, {"status": "ended", "cwd": None}) == {**current, "status": "ended"}
    assert merged(None, {"status": "ended"}) == {"status": "ended"}


def test_room_status_only_on_a_change_and_after_the_event_messages() -> None:
    stop = ev("Stop", last_assistant_message="All done.")
    assert room_status(stop, ctx(WAITING)) == []
    messages = with_room_status(render_event)(stop, ctx(WORKING))
    assert [m.event_type for m in messages] == ["m.room.message", "m.room.topic", THREAD_STATE]
    topic, state = messages[1:]
    assert topic.state_key == "" and state.state_key == ""
    assert topic.content["topic"] == "💬 Waiting for you · demo-app · session 3eb5f2"
    assert state.content == {
        "session_id": SESSION,
        "project": "demo-app",
        "cwd": CWD,
        "status": "active",
        "activity": WAITING,
    }
    # Not known (a room from before, or adopted): said at the first event that says anything.
    assert len(room_status(ev("PreToolUse", tool_name="Read"), ctx(None))) == 2
    assert room_status(ev("SubagentStop", agent_id="a"), ctx(None)) == []


def test_a_turn_costs_two_changes_not_one_per_event() -> None:
    turn = [
        ev("UserPromptSubmit", prompt="go"),
        ev("PreToolUse", tool_name="Read"),
        ev("PostToolUse", tool_name="Read"),
        ev("PermissionRequest", tool_name="Bash"),
        ev("Notification", message="needs you", notification_type="permission_prompt"),
        ev("PostToolUse", tool_name="Bash"),
        ev("Stop", last_assistant_message="done"),
        ev("Notification", message="idle", notification_type="idle_prompt"),
        ev("SessionEnd", reason="other"),
        ev("Notification", message="late", notification_type="idle_prompt"),
    ]
    current: str | None = WAITING
    said = []
    for event in turn:
        for message in room_status(event, ctx(current)):
            if message.event_type == THREAD_STATE:
                current = message.content["activity"]
                said.append(current)
    assert said == [WORKING, APPROVAL, WORKING, WAITING, ENDED]


def test_secrets_in_the_working_directory_stay_out() -> None:
    key = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    messages = room_status(ev("SessionEnd"), ctx(WAITING, cwd=f"/srv/{key}"))
    assert messages and all(key not in str(m.content) for m in messages)
