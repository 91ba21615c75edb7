"""``MatrixNames``: every Matrix id the bridge forms is read back to what formed it, and the ids
of different threads, of a thread and another's subagent, and of the bot never coincide."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from claude_bridge.config import parse_config
from claude_bridge.ids import SUBAGENT_MARK, MatrixNames, subagent_speaker, thread_id_for
from claude_bridge.registration import build_registration

NAMES = MatrixNames(
    domain="example.org", ghost_prefix="claude-", alias_prefix="claude-thread-", bot_localpart="bot"
)
sessions = st.text(min_size=1, max_size=60)
agents = st.text(min_size=1, max_size=60)


def test_built_from_the_config() -> None:
    config = parse_config(
        {
            "homeserver": {"domain": "hs.test"},
            "appservice": {"bot_username": "cbot"},
            "bridge": {"ghost_prefix": "cc_", "alias_prefix": "cc_room_"},
        }
    )
    names = config.matrix_names()
    assert names.bot == "@cbot:hs.test"
    assert names.ghost("t1") == "@cc_t1:hs.test"
    assert names.subagent_ghost("t1", "A79") == "@cc_t1-agent-a79:hs.test"
    assert names.alias("t1") == "#cc_room_t1:hs.test"
    assert build_registration(config)["namespaces"] == names.namespaces()


@given(sessions)
def test_a_threads_ids_read_back_to_the_thread(session: str) -> None:
    thread = thread_id_for(session)
    assert NAMES.thread_of_ghost(NAMES.ghost(thread)) == thread
    assert NAMES.thread_of_alias(NAMES.alias(thread)) == thread
    assert NAMES.thread_in_reference(NAMES.alias(thread)) == thread
    assert NAMES.is_bridge_user(NAMES.ghost(thread))
    assert NAMES.is_bridge_user(NAMES.subagent_ghost(thread, "a1"))


@given(sessions, sessions, agents, agents)
def test_ghosts_and_aliases_of_different_threads_are_disjoint(
    s1: str, s2: str, a1: str, a2: str
) -> None:
    t1, t2 = thread_id_for(s1), thread_id_for(s2)
    ghosts = {NAMES.ghost(t1), NAMES.subagent_ghost(t1, a1)}
    other = {NAMES.ghost(t2), NAMES.subagent_ghost(t2, a2)}
    if t1 != t2:
        assert not ghosts & other
        assert NAMES.alias(t1) != NAMES.alias(t2)
    # A subagent's ghost is never any session's own ghost: it names no thread a session maps to.
    assert NAMES.thread_of_ghost(NAMES.subagent_ghost(t1, a1)) != t2
    assert SUBAGENT_MARK not in t2
    assert NAMES.bot not in ghosts


@given(agents)
def test_subagent_ghosts_stay_valid_localparts(agent: str) -> None:
    speaker = subagent_speaker(agent)
    assert re.fullmatch(r"agent-[a-z0-9._=-]+", speaker)
    assert speaker.removeprefix("agent-").strip("=") and len(speaker) <= len("agent-") + 48


def test_ids_outside_the_namespace_name_no_thread() -> None:
    assert NAMES.thread_of_ghost("@claude-t1:other.org") is None
    assert NAMES.thread_of_ghost("@someone:example.org") is None
    assert NAMES.thread_of_ghost("@claude-:example.org") is None
    assert NAMES.thread_of_alias("#claude-thread-t1:other.org") is None
    assert NAMES.thread_of_alias("#general:example.org") is None
    assert NAMES.thread_of_alias(NAMES.ghost("t1")) is None  # a ghost's id is no alias
    assert not NAMES.is_bridge_user("@claude-t1:other.org")
    assert not NAMES.is_bridge_user("@alice:example.org")
    assert not NAMES.is_bridge_user("@botty:example.org")
    assert NAMES.is_bridge_user("@bot:example.org")


def test_a_typed_reference_is_read_leniently() -> None:
    """``!claude join`` takes an alias from any server, with or without the prefix."""
    assert NAMES.thread_in_reference("#claude-thread-abc:elsewhere") == "abc"
    assert NAMES.thread_in_reference("#abc") == "abc"
    assert NAMES.thread_in_reference("3eb5f21d") == "3eb5f21d"


def test_the_registration_claims_exactly_the_ghosts_the_bot_and_the_aliases() -> None:
    spaces = NAMES.namespaces()
    users = [re.compile(n["regex"]) for n in spaces["users"]]
    aliases = [re.compile(n["regex"]) for n in spaces["aliases"]]
    for user in (NAMES.ghost("t1"), NAMES.subagent_ghost("t1", "x"), NAMES.bot):
        assert any(r.fullmatch(user) for r in users)
    assert any(r.fullmatch(NAMES.alias("t1")) for r in aliases)
    assert not any(r.fullmatch("@alice:example.org") for r in users)
    assert not any(r.fullmatch("#general:example.org") for r in aliases)
    assert all(n["exclusive"] for n in spaces["users"] + spaces["aliases"])
