"""The pure parts of steering: decisions, message composition, roles, command parsing and help."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from claude_bridge.config import PermissionLevel
from claude_bridge.control import decisions
from claude_bridge.control.commands import MANAGEMENT, THREAD, Caller, CommandSet, Reply
from claude_bridge.control.messages import compose, fitting
from claude_bridge.control.roles import allows, effective_level
from claude_bridge.ids import SessionID, ThreadID
from claude_bridge.matrix.inbound_events import strip_reply_fallback
from claude_bridge.store import Thread
from claude_bridge.store.approvals import Approval
from claude_bridge.store.session_messages import SessionMessage

VIEWER, OP, ADMIN = PermissionLevel.VIEWER, PermissionLevel.OPERATOR, PermissionLevel.ADMIN
SUGGESTIONS = [{"type": "addDirectories", "directories": ["/p"], "destination": "session"}]


def approval(state: str, **fields: Any) -> Approval:
    values: dict[str, Any] = {
        "hook_event_id": 7,
        "thread_id": "t",
        "agent_id": "",
        "call_key": "k",
        "tool_name": "Bash",
        "request": {"tool_input": {"command": "npm test"}, "permission_suggestions": SUGGESTIONS},
        "state": state,
        "created_at": 0,
        "expires_at": 0,
        "decided_by": "@alice:x",
    }
    return Approval(**{**values, **fields})


def msg(n: int, body: str, sender: str = "@alice:x") -> SessionMessage:
    return SessionMessage(n, f"$e{n}", "t", "!r", sender, body, "queued", 0)


@pytest.mark.parametrize(
    ("key", "want"),
    [("✅", "allowed"), ("👍", "allowed"), ("🔁", "allowed_always"), ("♾️", "allowed_always"),
     ("❌", "denied"), ("👎", "denied"), ("🎉", None), ("✓", None),
     # What clients offer first, with the variation selector or a skin tone they may add.
     ("❎", "denied"), ("✔️", "allowed"), ("👍🏽", "allowed"), ("👍️", "allowed"),
     ("👎🏿", "denied"), (" ✅ ", "allowed"), ("✅✅", None), ("😄", None)],
)  # fmt: skip
def test_reaction_keys(key: str, want: str | None) -> None:
    assert decisions.from_reaction(key) == want


@pytest.mark.parametrize(
    ("body", "want"),
    [
        ("allow", ("allowed", None)),
        ("Yes!", ("allowed", None)),
        ("always", ("allowed_always", None)),
        ("deny", ("denied", None)),
        ("DENY: use a dry run first", ("denied", "use a dry run first")),
        ("allow but be careful", ("allowed", None)),  # only a denial carries a reason
        ("❌ not on main", ("denied", "not on main")),
        ("what does this do?", None),
        ("", None),
    ],
)
def test_reply_words(body: str, want: tuple[str, str | None] | None) -> None:
    assert decisions.from_reply(body) == want


def test_hook_answers_per_outcome() -> None:
    def decision(a: Approval) -> Any:
        return decisions.answer(a)["hookSpecificOutput"]["decision"]

    assert decisions.answer(approval("allowed"))["hookSpecificOutput"]["hookEventName"] == (
        "PermissionRequest"
    )
    assert decision(approval("allowed")) == {"behavior": "allow"}
    assert decision(approval("allowed_always")) == {
        "behavior": "allow",
        "updatedPermissions": SUGGESTIONS,
    }
    no_rule = approval("allowed_always", request={"tool_input": {}, "permission_suggestions": []})
    assert decision(no_rule) == {"behavior": "allow"}
    assert decision(approval("denied", reason="not now")) == {
        "behavior": "deny",
        "message": "Denied by @alice:x via Matrix. Their reason:\n> not now",
    }
    for state in ("pending", "timed_out", "answered_elsewhere"):
        assert decisions.answer(approval(state)) == {}


def test_outcome_lines_and_the_edited_request() -> None:
    assert decisions.outcome(approval("allowed"), 300) == "✅ Allowed once by @alice:x"
    assert decisions.outcome(approval("allowed"), 300, "Alice") == "✅ Allowed once by Alice"
    assert decisions.outcome(approval("timed_out"), 300).startswith("⌛ No decision within 5 min")
    assert "answered in the terminal" in decisions.outcome(approval("answered_elsewhere"), 300)
    # A prompt from before the request part was kept: the outcome goes over all of it.
    original = {"body": "🔐 Claude asks to use Bash", "formatted_body": "<p>🔐 <b>Bash</b></p>"}
    edited = decisions.settled_content(approval("denied", reason="<no>"), original, 300, "Al")
    assert edited["body"] == "❌ Denied by Al: <no>\n🔐 Claude asks to use Bash"
    assert edited["formatted_body"] == (
        '<p><b>❌ Denied by <a href="https://matrix.to/#/@alice:x">Al</a>: &lt;no&gt;</b></p>'
        "<p>🔐 <b>Bash</b></p>"
    )
    assert edited["m.mentions"] == {}  # an edit never pings again
    assert edited["msgtype"] == "m.text"  # as readable as the prompt was
    lone = decisions.settled_content(approval("allowed"), {}, 300)
    assert lone["body"] == "✅ Allowed once by @alice:x\nBash: npm test"
    assert '<a href="https://matrix.to/#/@alice:x">@alice:x</a>' in lone["formatted_body"]
    # Nobody decided: no pill.
    ended = decisions.settled_content(approval("timed_out", decided_by=None), original, 300)
    assert "<a " not in ended["formatted_body"]


def test_a_denied_calls_note_names_who_and_why() -> None:
    assert decisions.denied_note(approval("denied"), "Alice") == "denied by Alice"
    why = approval("denied", reason="use a\ndry run first")
    assert decisions.denied_note(why, None) == "denied by @alice:x: use a dry run first"


def test_an_unknown_reaction_is_answered_with_every_key_that_decides() -> None:
    hint = decisions.unknown_reaction("🎉")
    assert hint.startswith("🎉 does not decide this request.")
    for key in decisions.REACTIONS:
        assert key in hint
    assert "`deny <reason>`" in hint
    # Whatever a client sends as the key, the answer stays one short line of text.
    odd = decisions.unknown_reaction("`x`\n" + "y" * 500)
    assert "\n" not in odd and "`x`" not in odd and len(odd) < 300


def test_call_key_identifies_one_call() -> None:
    key = decisions.call_key("", "Bash", {"command": "ls", "description": "d"})
    assert key == decisions.call_key("", "Bash", {"description": "d", "command": "ls"})
    assert key != decisions.call_key("agent-1", "Bash", {"command": "ls", "description": "d"})


def test_messages_are_attributed_and_fit_the_budget() -> None:
    queue = [msg(1, "a" * 40), msg(2, "b" * 40, "@bob:x"), msg(3, "c" * 40)]
    one = len(decisions_free_text(queue[0]))
    assert [m.id for m in fitting(queue, one * 2 + 2)] == [1, 2]
    assert [m.id for m in fitting(queue, 5)] == [1]  # always at least one
    assert compose(queue[:2], 10_000) == (
        f"Message from @alice:x via Matrix:\n> {'a' * 40}\n\n"
        f"Message from @bob:x via Matrix:\n> {'b' * 40}"
    )
    cut = compose([msg(1, "x" * 500)], 200)
    assert len(cut) <= 200 and cut.endswith("more characters were sent in Matrix]")


def decisions_free_text(message: SessionMessage) -> str:
    return f"Message from {message.sender} via Matrix:\n> {message.body}"


def test_reply_fallback_is_stripped() -> None:
    assert strip_reply_fallback("> <@a:x> the question\n> more\n\ndeny too risky") == (
        "deny too risky"
    )
    assert strip_reply_fallback("plain") == "plain"


def test_effective_levels() -> None:
    assert effective_level(OP, None) == OP
    assert effective_level(None, "operator") == OP
    assert effective_level(OP, "viewer") == VIEWER
    assert effective_level(OP, "none") is None
    assert effective_level(ADMIN, "none") == ADMIN  # admins cannot be shut out of a room
    assert (
        allows(ADMIN, OP) and allows(OP, OP) and not allows(VIEWER, OP) and not allows(None, VIEWER)
    )


def caller(level: PermissionLevel | None, *, thread: bool = True) -> Caller:
    t = Thread(ThreadID("t"), SessionID("s"), "@claude-t:x", "#claude-thread-t:x")
    return Caller("@u:x", level, "!r", "$e", t if thread else None)


@pytest.fixture
def commands() -> CommandSet:
    cs = CommandSet("!claude")

    async def echo(c: Caller, args: argparse.Namespace) -> Reply:
        return Reply(f"{c.user_id} {vars(args)}")

    cs.add("look", "Look around.", echo, level=VIEWER)
    cs.add(
        "poke",
        "Poke someone.",
        echo,
        level=OP,
        rooms=(THREAD,),
        arguments=[(("who",), {}), (("--hard",), {"action": "store_true"})],
    )
    cs.add("rule", "Rule.", echo, level=ADMIN, rooms=(MANAGEMENT,))
    return cs


def test_command_detection(commands: CommandSet) -> None:
    assert commands.split("hello there", management=False) is None
    assert commands.split("!Claude  poke 'bob smith'", management=False) == ["poke", "bob smith"]
    assert commands.split("!claude", management=False) == ["help"]
    assert commands.split("look", management=True) == ["look"]  # the bot chat needs no prefix
    assert commands.split("!claude look", management=True) == ["look"]


async def test_commands_check_level_room_and_arguments(commands: CommandSet) -> None:
    ok = await commands.run(caller(OP), ["poke", "bob", "--hard"])
    assert ok.text == "@u:x {'who': 'bob', 'hard': True}"
    assert (
        "needs operator; you are viewer" in (await commands.run(caller(VIEWER), ["poke", "x"])).text
    )
    assert (
        "works in a chat with the bridge bot" in (await commands.run(caller(ADMIN), ["rule"])).text
    )
    assert (
        "works in a thread room"
        in (await commands.run(caller(ADMIN, thread=False), ["poke", "x"])).text
    )
    missing = (await commands.run(caller(OP), ["poke"])).text
    assert "required: who" in missing and "Usage: `poke [--hard] who`" in missing
    unknown = (await commands.run(caller(VIEWER), ["dance"])).text
    assert unknown == "⚠️ Unknown command `dance`. You can use: look."
    assert "Poke someone." in (await commands.run(caller(OP), ["poke", "-h"])).text


def test_help_is_filtered_by_level_and_room(commands: CommandSet) -> None:
    assert commands.help(caller(VIEWER)) == "Commands:\n\n- `!claude look` — Look around."
    assert "poke" in commands.help(caller(OP)) and "rule" not in commands.help(caller(ADMIN))
    management = commands.help(caller(ADMIN, thread=False))
    assert "- `look` — Look around." in management and "- `rule` — Rule." in management
    assert commands.help(caller(OP), "poke").startswith("`!claude poke [--hard] who`")
