"""Snapshots of the rendered content of the main events (``UPDATE_SNAPSHOTS=1`` to rewrite)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from claude_bridge.render import OutboundMessage

from .helpers import SNAPSHOTS, assert_valid, event, load_payload, render

Snapshot = Callable[[str, list[OutboundMessage]], None]
OPERATORS = ("@alice:example.org", "@bob:example.org")

REPLY = """\
## Done — tests pass

I changed **two** files:

1. `src/app.py`: fixed the ~~off by one~~ bound check
2. `README.md`: documented it

| File | Lines | Status |
|------|------:|:------:|
| src/app.py | 12 | ✅ |
| README.md | 3 | ✅ |

```python
def f(x: int) -> int:
    return x + 1  # <b>not bold</b>
```

<script>alert("xss")</script> and <img src=x onerror=alert(1)>

See [the docs](https://example.org/docs), not [this](javascript:alert(1)).
![diagram](https://example.org/d.png) @room @alice:example.org
"""


def _check(snapshot: Snapshot, name: str, messages: list[OutboundMessage]) -> None:
    assert_valid(messages)
    snapshot(name, messages)


def test_stop_markdown(snapshot: Snapshot) -> None:
    _check(snapshot, "stop_markdown", render(event("Stop", last_assistant_message=REPLY)))


def test_user_prompt_submit_names_room(snapshot: Snapshot) -> None:
    messages = render(load_payload("UserPromptSubmit.json"), title=None)
    _check(snapshot, "user_prompt_submit", messages)


def test_user_prompt_submit_with_html(snapshot: Snapshot) -> None:
    prompt = "fix the <b>login</b> page\n\n```js\nif (a < b && c) {}\n```"
    messages = render(event("UserPromptSubmit", prompt=prompt), title="demo-app: earlier")
    _check(snapshot, "user_prompt_submit_html", messages)


def test_pre_tool_use_bash(snapshot: Snapshot) -> None:
    _check(snapshot, "pre_tool_use_bash", render(load_payload("PreToolUse.json")))


def test_post_tool_use_bash(snapshot: Snapshot) -> None:
    _check(snapshot, "post_tool_use_bash", render(load_payload("PostToolUse.json")))


def test_post_tool_use_edit_diff(snapshot: Snapshot) -> None:
    ev = event(
        "PostToolUse",
        tool_name="Edit",
        tool_use_id="toolu_edit1",
        tool_input={
            "file_path": "/home/dev/projects/demo-app/src/app.py",
            "old_string": "def limit(items):\n    return items[:10]\n",
            "new_string": "def limit(items, n=10):\n    return items[:n]\n",
        },
        tool_response={"filePath": "/home/dev/projects/demo-app/src/app.py"},
    )
    _check(snapshot, "post_tool_use_edit_diff", render(ev))


def test_post_tool_use_failure(snapshot: Snapshot) -> None:
    ev = event(
        "PostToolUseFailure",
        tool_name="Bash",
        tool_use_id="toolu_fail1",
        tool_input={"command": "npm test"},
        error="Exit code 1\nFAIL src/app.test.js\n  Expected: 2\n  Received: <undefined>",
    )
    _check(snapshot, "post_tool_use_failure", render(ev))


def test_notification_with_operators(snapshot: Snapshot) -> None:
    messages = render(load_payload("Notification.json"), operators=OPERATORS)
    _check(snapshot, "notification_operators", messages)


def test_session_end(snapshot: Snapshot) -> None:
    messages = render(load_payload("SessionEnd.prompt_input_exit.json"))
    _check(snapshot, "session_end", messages)


def test_session_start(snapshot: Snapshot) -> None:
    _check(snapshot, "session_start", render(load_payload("SessionStart.compact.json")))


def test_subagent_stop(snapshot: Snapshot) -> None:
    _check(snapshot, "subagent_stop", render(load_payload("SubagentStop.json")))


def test_missing_snapshot_fails_without_update(
    snapshot: Snapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UPDATE_SNAPSHOTS", raising=False)
    with pytest.raises(pytest.fail.Exception, match="missing"):
        snapshot("no_such_snapshot", [])
    assert not (SNAPSHOTS / "no_such_snapshot.json").exists()


def test_changed_rendering_fails(snapshot: Snapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UPDATE_SNAPSHOTS", raising=False)
    with pytest.raises(AssertionError, match="differs"):
        snapshot("pre_tool_use_bash", render(load_payload("Stop.json")))
