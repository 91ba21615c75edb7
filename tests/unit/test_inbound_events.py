"""``inbound_events.parse``: a raw Matrix event → the record of its kind, typed strictly, never an
exception; what cannot be read as its kind is a plain ``Inbound``, which nothing acts on."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from claude_bridge.ids import MatrixNames
from claude_bridge.matrix.echo import EchoFilter
from claude_bridge.matrix.inbound_events import (
    HANDOFF_FIELD,
    Edit,
    Encryption,
    Inbound,
    Membership,
    Message,
    Reaction,
    Redaction,
    StateChange,
    parse,
)


def raw(kind: str, content: Any = None, **extra: Any) -> dict[str, Any]:
    event = {"type": kind, "event_id": "$e", "room_id": "!r", "sender": "@alice:x", **extra}
    if content is not None:
        event["content"] = content
    return event


def test_a_message_reads_its_text_reply_and_claim() -> None:
    event = parse(raw("m.room.message", {"msgtype": "m.text", "body": "  run the tests \n"}))
    assert event == Message(
        event_id="$e",
        room_id="!r",
        sender="@alice:x",
        type="m.room.message",
        handoff_claim=None,
        msgtype="m.text",
        body="  run the tests \n",
        text="run the tests",
        reply_to=None,
        has_relation=False,
    )
    reply = parse(
        raw(
            "m.room.message",
            {
                "msgtype": "m.text",
                "body": "> <@claude-t:x> may I?\n\ndeny too risky",
                "m.relates_to": {"m.in_reply_to": {"event_id": "$ask"}},
                HANDOFF_FIELD: "t2",
            },
        )
    )
    assert isinstance(reply, Message) and not isinstance(reply, Edit)
    assert (reply.text, reply.reply_to, reply.has_relation) == ("deny too risky", "$ask", True)
    assert reply.handoff_claim == "t2"


def test_an_edit_reads_what_it_replaces() -> None:
    content = {
        "msgtype": "m.text",
        "body": "* fixed",
        "m.new_content": {"msgtype": "m.text", "body": "fixed"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$old"},
    }
    edit = parse(raw("m.room.message", content))
    assert isinstance(edit, Edit)
    assert (edit.replaces, edit.new_body, edit.has_relation) == ("$old", "fixed", True)
    # Not strings: nothing to edit with.
    content["m.new_content"] = {"body": 7}
    content["m.relates_to"] = {"rel_type": "m.replace", "event_id": 5}
    bad = parse(raw("m.room.message", content))
    assert isinstance(bad, Edit) and bad.new_body is None and bad.replaces is None


def test_fields_of_the_wrong_type_read_as_absent() -> None:
    numeric = parse(raw("m.room.message", {"msgtype": "m.text", "body": 5}))
    assert isinstance(numeric, Message) and numeric.body is None and numeric.text == ""
    not_a_dict = parse(raw("m.room.message", "hello"))
    assert isinstance(not_a_dict, Message) and not_a_dict.body is None
    # A relation nobody can follow: not a message anyone acts on.
    for relates in ("x", {"m.in_reply_to": "x"}):
        content = {"msgtype": "m.text", "body": "hi", "m.relates_to": relates}
        assert type(parse(raw("m.room.message", content))) is Inbound
    odd_reply = parse(
        raw(
            "m.room.message",
            {
                "msgtype": "m.text",
                "body": "> q\nhi",
                "m.relates_to": {"m.in_reply_to": {"event_id": 5}},
            },
        )
    )
    assert isinstance(odd_reply, Message) and odd_reply.reply_to is None and odd_reply.text == "hi"


def test_reactions_count_only_as_annotations_with_an_event_id() -> None:
    ok = parse(
        raw(
            "m.reaction",
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$a", "key": "✅"}},
        )
    )
    assert isinstance(ok, Reaction) and (ok.target, ok.key) == ("$a", "✅")
    for relates in (
        {"rel_type": "m.reference", "event_id": "$a", "key": "✅"},
        {"rel_type": "m.annotation", "event_id": 5, "key": "✅"},
        "x",
    ):
        event = parse(raw("m.reaction", {"m.relates_to": relates}))
        assert isinstance(event, Reaction) and event.target is None


def test_redactions_name_their_target_in_any_room_version() -> None:
    old = parse(raw("m.room.redaction", {}, redacts="$m"))
    v11 = parse(raw("m.room.redaction", {"redacts": "$m"}))
    assert isinstance(old, Redaction) and isinstance(v11, Redaction)
    assert old.redacts == v11.redacts == "$m"
    bad = parse(raw("m.room.redaction", {"redacts": ["$m"]}))
    assert isinstance(bad, Redaction) and bad.redacts is None


def test_state_membership_and_encryption() -> None:
    member = parse(
        raw("m.room.member", {"membership": "invite", "is_direct": True}, state_key="@b:x")
    )
    assert isinstance(member, Membership)
    assert (member.target, member.membership, member.is_direct) == ("@b:x", "invite", True)
    odd = parse(raw("m.room.member", {"membership": 1}, state_key=5))
    assert isinstance(odd, Membership) and odd.target is None and odd.membership is None
    assert isinstance(parse(raw("m.room.encryption", {}, state_key="")), Encryption)
    assert isinstance(parse(raw("m.room.power_levels", {}, state_key="")), StateChange)
    # A message type sent as state is state: the guard checks the room.
    assert isinstance(parse(raw("m.room.message", {"body": "x"}, state_key="")), StateChange)
    assert type(parse(raw("m.room.topic", {}))) is Inbound


def test_the_handoff_claim_is_read_only_on_messages() -> None:
    names = MatrixNames(
        "x", ghost_prefix="claude-", alias_prefix="claude-thread-", bot_localpart="bot"
    )
    echoes = EchoFilter(names)
    ghost = names.ghost("t1")
    claim = {"msgtype": "m.text", "body": "hi", HANDOFF_FIELD: "t1"}
    assert not echoes.is_echo(parse(raw("m.room.message", claim, sender=ghost)))
    assert echoes.is_echo(parse(raw("m.room.message", {**claim, HANDOFF_FIELD: ""}, sender=ghost)))
    assert echoes.is_echo(parse(raw("m.reaction", claim, sender=ghost)))
    assert echoes.is_echo(parse(raw("m.room.message", {"body": "hi"}, sender=names.bot)))
    # Anyone else's events are never echoes, marked or not.
    assert not echoes.is_echo(parse(raw("m.room.message", {"body": "hi"})))
    assert not echoes.is_echo(parse({"type": "m.room.message", "sender": 5}))


json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=12,
)
kinds = st.sampled_from(
    ["m.room.message", "m.reaction", "m.room.redaction", "m.room.member", "m.room.encryption", "x"]
)


@given(
    kinds,
    st.dictionaries(
        st.sampled_from(["content", "state_key", "redacts", "sender", "event_id", "room_id"]), json
    ),
    st.dictionaries(
        st.sampled_from(
            ["body", "msgtype", "m.relates_to", "m.new_content", "membership", HANDOFF_FIELD]
        ),
        json,
    ),
)
def test_parse_never_raises_and_keeps_its_types(
    kind: str, fields: dict[str, Any], content: dict[str, Any]
) -> None:
    event = parse({"type": kind, "content": content, **fields})
    assert isinstance(event, Inbound)
    for value in vars(event).values():
        assert value is None or isinstance(value, (str, bool))
