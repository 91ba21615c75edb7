"""Session lifecycle, room naming, notices for the smaller events."""

from __future__ import annotations

import pytest

from .helpers import event, load_payload, render


@pytest.mark.parametrize(
    ("source", "model", "body"),
    [
        ("startup", None, "▶️ Session started in demo-app"),
        ("startup", "claude-opus-4-8", "▶️ Session started in demo-app (model claude-opus-4-8)"),
        ("resume", None, "🔄 Session resumed"),
        ("clear", None, "🧹 Conversation cleared"),
        ("compact", "m", "🗜️ Session continues after compaction"),  # more: test_render_compaction
        ("teleport", None, "▶️ Session started (teleport)"),
    ],
)
def test_session_start(source: str, model: str | None, body: str) -> None:
    # One notice: the topic and thread state are render/room_status's (tests/unit/test_room_state).
    (notice,) = render(event("SessionStart", source=source, model=model))
    assert notice.content["body"] == body


def test_session_end_is_one_notice() -> None:
    (notice,) = render(load_payload("SessionEnd.json"))
    assert notice.content["body"] == "⏹️ Session ended"


@pytest.mark.parametrize(
    ("prompt", "title", "name"),
    [
        ("say hi", None, "say hi · demo-app"),
        ("  fix\n\nthe   bug ", None, "fix the bug · demo-app"),
        ("x" * 200, None, "x" * 48 + "… · demo-app"),
        ("/clear", None, None),
        ("/review PR 12", None, "/review PR 12 · demo-app"),
        ("say hi", "demo-app: earlier", None),
        ("", None, None),
    ],
)
def test_room_name(prompt: str, title: str | None, name: str | None) -> None:
    messages = render(event("UserPromptSubmit", prompt=prompt), title=title)
    names = [m.content["name"] for m in messages if m.event_type == "m.room.name"]
    assert names == ([name] if name else [])
    if name:
        assert len(name) <= 60


def test_empty_prompt_posts_nothing() -> None:
    assert render(event("UserPromptSubmit", prompt="  "), title="t") == []


@pytest.mark.parametrize(
    ("fields", "body"),
    [
        ({"error": "rate_limit", "error_details": "429"}, "⚠️ Claude stopped: rate limit\n429"),
        ({"error_type": "server_error", "error_message": "overloaded"},
         "⚠️ Claude stopped: server error\noverloaded"),
        ({"error": {"type": "billing_error", "message": "card declined"}},
         "⚠️ Claude stopped: card declined"),
        ({}, "⚠️ Claude stopped: error"),
    ],
)  # fmt: skip
def test_stop_failure(fields: dict[str, object], body: str) -> None:
    (msg,) = render(event("StopFailure", **fields), operators=("@op:example.org",))
    assert msg.content["body"] == body + " — @op:example.org"
    assert msg.content["m.mentions"] == {"user_ids": ["@op:example.org"]}


def test_notification_title_and_fallbacks() -> None:
    (msg,) = render(event("Notification", message="Proceed?", title="Claude Code"))
    assert msg.content["body"] == "🔔 Claude Code: Proceed?"
    (msg,) = render(event("Notification", message="", notification_type="auth_success"))
    assert msg.content["body"] == "🔑 auth_success"


def test_subagent_start_by_its_ghost() -> None:
    (msg,) = render(load_payload("SubagentStart.json"))
    assert msg.sender == "agent-a7913635a7accad94"
    assert msg.sender_displayname == "general-purpose (subagent)"
    assert msg.content["body"] == "🤖 Subagent started (general-purpose)"


@pytest.mark.parametrize(
    ("fields", "body"),
    [
        ({"hook_event_name": "CwdChanged", "old_cwd": "/a", "new_cwd": "/b"},
         "📂 Working directory changed: /a → /b"),
        ({"hook_event_name": "TaskCompleted", "task_subject": "Write tests"},
         "✅ Task completed: Write tests"),
        ({"hook_event_name": "WorktreeCreate", "name": "feature-x"}, "🌳 Worktree created: feature-x"),
        ({"hook_event_name": "ConfigChange", "source": "user_settings"},
         "⚙️ Configuration changed: user_settings"),
        ({"hook_event_name": "Elicitation", "mcp_server_name": "gh", "message": "Token?"},
         "❓ MCP server asks for input: gh · Token?"),
    ],
)  # fmt: skip
def test_minor_events(fields: dict[str, str], body: str) -> None:
    (msg,) = render(event(**fields))
    assert msg.content["body"] == body
    assert msg.content["msgtype"] == "m.notice"
