"""Secrets never reach Matrix: not in messages, room names, topics, display names or files."""

from __future__ import annotations

import pytest

from claude_bridge.config.sections.mirror import RedactConfig
from claude_bridge.render import Attachment, MirrorConfig, OutboundMessage, render_event
from claude_bridge.render.content import Env
from claude_bridge.render.finalize import finalize
from claude_bridge.render.room_status import with_room_status
from claude_bridge.render.scrub import scrubber_for

from .helpers import assert_valid, event, everything, make_ctx, render

ANTHROPIC = "sk-ant-api03-Xq9vB2mZk4Lr7Tn1Yp6Wc3Hd8Gf5Js0AaBbCcDdEeFfGgHh-1234567890AA"
GITHUB = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACDw0qZ4mW8nL3kF5JH2Rb9YqXo1c7vTzM6eK0pN4uS2dQAAAJgAAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----"
)
KEY_BODY = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"
SECRETS = (ANTHROPIC, GITHUB, KEY_BODY)
PLANTED = f"use {ANTHROPIC} then push with {GITHUB}\n{PRIVATE_KEY}\nthanks"


def _assert_clean(messages: list) -> None:
    assert_valid(messages)
    text = everything(messages)
    for secret in SECRETS:
        assert secret not in text
    assert "[redacted]" in text


def test_prompt_and_room_name() -> None:
    messages = render(event("UserPromptSubmit", prompt=f"{ANTHROPIC} {PLANTED}"), title=None)
    assert any(m.event_type == "m.room.name" for m in messages)
    _assert_clean(messages)


def test_tool_output_including_attachment() -> None:
    stdout = PLANTED + "\n" + "\n".join(f"log line {i}" for i in range(500)) + "\n" + PLANTED
    messages = render(
        event(
            "PostToolUse",
            tool_name="Bash",
            tool_use_id="toolu_s",
            tool_input={"command": f"curl -H 'Authorization: Bearer {GITHUB}' x"},
            tool_response={"stdout": stdout, "stderr": PLANTED},
        )
    )
    assert messages[-1].attachment is not None
    _assert_clean(messages)
    assert "Bearer [redacted]" in everything(messages)


def test_reply_stream_and_subagent() -> None:
    for ev, ctx in [
        (event("Stop", last_assistant_message=PLANTED), {}),
        (event("SubagentStop", agent_id="a1", last_assistant_message=PLANTED), {}),
        (event("MessageDisplay", message_id="m", index=2, delta="x"), {"stream_text": PLANTED}),
        (event("Stop", last_assistant_message=PLANTED + "!"), {"stream_anchor": "stream:m"}),
    ]:
        _assert_clean(render(ev, **ctx))


def test_tool_input_diff_failure_and_notification() -> None:
    write = event(
        "PostToolUse",
        tool_name="Write",
        tool_use_id="toolu_w",
        tool_input={"file_path": "/home/dev/projects/demo-app/.env", "content": PLANTED},
        tool_response={},
    )
    failure = event(
        "PostToolUseFailure",
        tool_name="Bash",
        tool_use_id="toolu_f",
        tool_input={"command": f"deploy --token {GITHUB}"},
        error=PLANTED,
    )
    notification = event("Notification", message=PLANTED, title=ANTHROPIC)
    stop_failure = event("StopFailure", error="authentication_failed", error_details=PLANTED)
    for ev in (write, failure, notification, stop_failure):
        _assert_clean(render(ev, operators=("@alice:example.org",)))


def test_secret_named_keys_hide_their_values() -> None:
    ev = event(
        "PreToolUse",
        tool_name="mcp__vault__login",
        tool_use_id="toolu_v",
        tool_input={"password": "correct horse battery staple"},
    )
    text = everything(render(ev))
    assert "correct horse" not in text


def test_context_and_unknown_event_fields() -> None:
    # The topic and thread state (render/room_status) carry the project and the working directory.
    messages = with_room_status(render_event)(
        event("SessionEnd", reason="other", cwd=f"/tmp/{GITHUB}"),
        make_ctx(project=f"demo {ANTHROPIC}"),
    )
    assert [m.event_type for m in messages[1:]] == ["m.room.topic", "org.claude_bridge.thread"]
    _assert_clean(messages)
    _assert_clean(render(event(f"Weird{GITHUB}")))


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (ANTHROPIC, ""),
        ("sk-proj-" + "a1B2c3D4e5F6g7H8i9J0k1L2", ""),
        ("sk-" + "a1B2c3D4e5F6g7H8i9J0k1L2m3", ""),
        (GITHUB, ""),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuv", ""),
        ("gho_" + "x" * 36, ""),
        ("glpat-" + "abcdefghij0123456789", ""),
        ("xoxb-1234567890-abcdefghij", ""),
        ("AKIAIOSFODNN7EXAMPLE", ""),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_access_key = ",
        ),
        ("AIzaSyA-1234567890abcdefghijklmnopqrstu", ""),
        ("sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", ""),
        ("Authorization: Bearer abc.def-ghi_jkl", "Authorization: Bearer "),
        ("authorization: Basic dXNlcjpwYXNzd29yZA==", "authorization: Basic "),
        ("curl -H 'bearer 0123456789abcdef'", "curl -H 'bearer "),
        (
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "",
        ),
        ("password=hunter22", "password="),
        ("DB_PASSWORD: 's3cr3t!'", "DB_PASSWORD: '"),
        ('{"api_key": "abcd1234"}', '{"api_key": "'),
        ("passwd:letmein", "passwd:"),
        ("secret=xyz", "secret="),
        ("https://x.io/cb?token=abcdef&x=1", "https://x.io/cb?token="),
        ("postgres://app:pa55w0rd@db:5432/app", "postgres://app:"),
        (PRIVATE_KEY, ""),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow (cut off", ""),
    ],
)
def test_default_patterns(text: str, kept: str) -> None:
    scrubbed = scrubber_for(RedactConfig()).text(text)
    assert scrubbed.startswith(kept + "[redacted]"), scrubbed
    assert scrubber_for(RedactConfig()).text(scrubbed) == scrubbed  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "the token count is 12",
        "max_tokens: 4096",
        "basic functionality works",
        "Passwords must be long",
        "ssh://git@github.com:22/org/repo.git",
        "sk-learn is a library",
        "session 3eb5f21d-5dcb-43a8-9ab8-939331f73b6b",
    ],
)
def test_ordinary_text_is_kept(text: str) -> None:
    assert scrubber_for(RedactConfig()).text(text) == text


def test_config() -> None:
    assert scrubber_for(RedactConfig(enabled=False)).text(ANTHROPIC) == ANTHROPIC
    custom = RedactConfig(use_defaults=False, patterns=[r"ACME-\d+", r"pin (?P<secret>\d{4})"])
    scrub = scrubber_for(custom)
    assert scrub.text(f"ACME-123 pin 1234 {GITHUB}") == f"[redacted] pin [redacted] {GITHUB}"
    assert scrubber_for(RedactConfig(replacement="***")).text(GITHUB) == "***"
    with pytest.raises(ValueError, match="invalid redact pattern"):
        RedactConfig(patterns=["(unclosed"])


def test_disabled_redaction_via_mirror_config() -> None:
    messages = render(
        event("UserPromptSubmit", prompt=ANTHROPIC), mirror={"redact": {"enabled": False}}
    )
    assert ANTHROPIC in everything(messages)


def test_finalize_scrubs_whatever_a_renderer_built() -> None:
    opts = MirrorConfig()
    env = Env(ctx=make_ctx(), opts=opts, scrub=scrubber_for(opts.redact))
    data = PLANTED.encode()
    msg = OutboundMessage(
        content={"msgtype": "m.file", "body": GITHUB, "info": {"size": len(data)}},
        attachment=Attachment(data, f"{GITHUB}.txt"),
        sender_displayname=ANTHROPIC,
    )
    done = finalize(msg, env)
    _assert_clean([done])
    assert done.attachment is not None
    assert done.content["info"]["size"] == len(done.attachment.data) < len(data)
    assert done.content["m.mentions"] == {}
