"""Whose session is it: token settings, the access rules, caps, disjoint ghosts, bounded cursors.

The pure parts; tests/e2e/security/test_ownership.py runs the same rules against a real bridge.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_bridge.config import ConfigError, HookToken, TokenRole, load_config, parse_config
from claude_bridge.config.example import render_example
from claude_bridge.devenv.quickstart import prepare
from claude_bridge.history import decode_cursor, encode_cursor
from claude_bridge.hooks.caps import HeldApprovals, HeldLimit, ThreadCapReached, ThreadCaps
from claude_bridge.ids import SUBAGENT_MARK, ThreadID, subagent_speaker, thread_id_for
from claude_bridge.ownership import orphans
from claude_bridge.provision import provision
from claude_bridge.token_access import TokenAccess

SECRETS = {"a": "alpha-secret-0123456789", "b": "bravo-secret-0123456789"}


def access(**tokens: object) -> TokenAccess:
    return TokenAccess(parse_config({"hooks": {"tokens": tokens}}).hooks)


def test_a_plain_secret_is_a_host_token_with_the_defaults() -> None:
    hooks = parse_config({"hooks": {"tokens": {"laptop": "s" * 20}}}).hooks
    assert hooks.tokens == {"laptop": "s" * 20}  # kept as written
    assert hooks.hook_tokens() == {"laptop": HookToken(secret="s" * 20)}
    token = hooks.hook_tokens()["laptop"]
    assert (token.role, token.local, token.max_threads, token.renamed_from) == (
        TokenRole.HOST,
        False,
        0,
        [],
    )
    assert hooks.secrets() == {"laptop": "s" * 20}


def test_full_entries_and_their_errors() -> None:
    hooks = parse_config(
        {
            "hooks": {
                "tokens": {
                    "ci": {"secret": "c" * 20, "role": "shared", "max_threads": 5},
                    "desk": {"secret": "d" * 20, "local": True, "renamed_from": ["old-desk"]},
                }
            }
        }
    ).hooks
    assert hooks.hook_tokens()["ci"].role == TokenRole.SHARED
    assert hooks.hook_tokens()["desk"].local
    for tokens, message in [
        ({"a": "x" * 20, "b": "x" * 20}, "one secret"),
        ({"a": {"secret": "x" * 20, "renamed_from": ["b"]}, "b": "y" * 20}, "configured token"),
        (
            {
                "a": {"secret": "x" * 20, "renamed_from": ["o"]},
                "b": {"secret": "y" * 20, "renamed_from": ["o"]},
            },
            "renamed_from of",
        ),
        ({"a": {"secret": "x" * 20, "role": "root"}}, "hooks.tokens.a"),
        ({"a": {"secret": "x" * 20, "colour": "red"}}, "unknown key"),
        ({"a": {"secret": ""}}, "hooks.tokens.a"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_config({"hooks": {"tokens": tokens}})


def test_the_example_documents_every_key_of_a_token_entry() -> None:
    text = render_example()
    for key in HookToken.model_fields:
        assert f"#     {key}:" in text, key


def test_identify_takes_the_bearer_secret_only() -> None:
    rules = access(**SECRETS)
    assert rules.identify(f"Bearer {SECRETS['a']}") == "a"
    assert rules.identify(f"Bearer  {SECRETS['b']} ") == "b"
    for header in ("", SECRETS["a"], f"Basic {SECRETS['a']}", f"Bearer {SECRETS['a']}x", "Bearer "):
        assert rules.identify(header) is None


def test_who_may_do_what_with_a_thread() -> None:
    rules = access(
        **SECRETS,
        hub={"secret": "h" * 20, "role": "shared"},
        root={"secret": "r" * 20, "role": "admin"},
    )
    table = {
        name: (rules.may_post_events(name, "a"), rules.may_read(name, "a"), rules.sees_all(name))
        for name in ("a", "b", "hub", "root", None)
    }
    assert table == {
        "a": (True, True, False),
        "b": (False, False, False),
        "hub": (False, True, True),
        "root": (True, True, True),
        None: (False, False, False),
    }
    # A thread no token owns: only admin may post into it, shared/admin read it.
    assert [rules.may_post_events(n, None) for n in ("a", "hub", "root")] == [False, False, True]
    assert "another hook token" in rules.refusal("s1", "a", "read")
    orphaned = rules.refusal("s1", "gone", "read")
    assert "'gone'" in orphaned and "renamed_from" in orphaned


def test_orphans_are_owners_neither_configured_nor_renamed() -> None:
    rules = access(a={"secret": "x" * 20, "renamed_from": ["old-a"]})
    owners: dict[str | None, list[ThreadID]] = {
        "a": [ThreadID("t1")],
        "old-a": [ThreadID("t2")],
        "gone": [ThreadID(f"t{i}") for i in range(3, 11)],
        None: [ThreadID("t11")],
    }
    found = {o.owner: o.describe() for o in orphans(owners, rules)}
    assert set(found) == {"gone", None}
    assert found["gone"].startswith("8 thread(s) of token 'gone' (t3, t4, t5, t6, t7 and 3 more")


def test_held_approvals_are_capped_per_token() -> None:
    held = HeldApprovals(lambda name: {"a": 2, "b": 0}.get(name or "", 1))
    held.take("a")
    held.take("a")
    with pytest.raises(HeldLimit, match="max_held_approvals"):
        held.take("a")
    for _ in range(50):
        held.take("b")  # 0: no limit
    held.give_back("a")
    held.take("a")
    assert held.held("a") == 2
    for _ in range(3):
        held.give_back("a")
    assert held.held("a") == 0


async def test_thread_cap_counts_sessions_being_opened() -> None:
    stored = {"a": 1}

    async def count(name: str) -> int:
        await asyncio.sleep(0)  # a query: other opens run meanwhile
        return stored[name]

    caps = ThreadCaps(lambda name: 3 if name == "a" else 0, count)
    # Two new sessions at once with room for two: both pass, a third at the same time does not.
    await asyncio.gather(caps.open("a", ThreadID("n1")), caps.open("a", ThreadID("n2")))
    with pytest.raises(ThreadCapReached, match="max_threads"):
        await caps.open("a", ThreadID("n3"))
    caps.opened("a", ThreadID("n1"))  # failed to store: its place is free again
    await caps.open("a", ThreadID("n3"))
    await caps.open("b", ThreadID("x"))  # no cap


@given(st.text(min_size=1, max_size=60), st.text(min_size=1, max_size=30))
def test_no_session_gets_the_ghost_of_anothers_subagent(session: str, agent: str) -> None:
    """A main ghost is ``<thread id>``, a subagent's ``<thread id>-agent-<fragment>``: disjoint."""
    assert SUBAGENT_MARK not in thread_id_for(session)
    subagent_ghost = f"{thread_id_for(session)}-{subagent_speaker(agent)}"
    assert thread_id_for(f"{session}-{subagent_speaker(agent)}") != subagent_ghost
    assert thread_id_for(subagent_ghost) != subagent_ghost


def test_uuid_session_ids_keep_their_thread_ids() -> None:
    """Existing rooms are found again: real session ids (UUIDs) map as before."""
    session = "3eb5f21d-5dcb-43a8-9ab8-939331f73b6b"
    assert thread_id_for(session) == session
    assert thread_id_for("S-agent-a79") == "s=2dagent-a79"
    assert thread_id_for("a-agent-agent") == "a=2dagent=2dagent"


@pytest.mark.parametrize(
    "raw",
    [
        "9" * 400 + ".h.1",
        "1.h." + "9" * 40,
        f"{2**63}.m.$event",
        "-1.h.5",
        "1.m.a\x00b",
        "1.x.5",
        "1e3.h.5",
        "١٢.h.5",
    ],
)
def test_cursors_out_of_range_are_value_errors(raw: str) -> None:
    cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
    with pytest.raises(ValueError, match="not a cursor"):
        decode_cursor(cursor)


def test_cursors_the_api_makes_still_decode() -> None:
    assert decode_cursor(encode_cursor(1_700_000_000_000, "h", 42)) == (
        1_700_000_000_000,
        "h",
        "42",
    )
    assert decode_cursor(encode_cursor(5, "m", "$ev:x")) == (5, "m", "$ev:x")


def test_setup_writes_full_token_entries_from_the_environment(tmp_path: Path) -> None:
    """``CLAUDE_BRIDGE__HOOKS__TOKENS='{…}'`` with full entries lands in the file as YAML."""
    entry = '{"desk": {"secret": "d-long-enough-secret-0123", "local": true, "role": "shared"}}'
    config_path = tmp_path / "config.yaml"
    provision(config_path, tmp_path / "registration.yaml", {"CLAUDE_BRIDGE__HOOKS__TOKENS": entry})
    desk = load_config(config_path, {}).hooks.hook_tokens()["desk"]
    assert (desk.secret, desk.local, desk.role) == ("d-long-enough-secret-0123", True, "shared")


def test_the_quickstart_token_is_local(tmp_path: Path) -> None:
    """The quickstart runs the bridge where Claude Code runs: catch-up must keep working there."""
    config_path, _ = prepare(tmp_path, "admin", {})
    [token] = load_config(config_path, {}).hooks.hook_tokens().values()
    assert token.local and token.role == TokenRole.HOST
