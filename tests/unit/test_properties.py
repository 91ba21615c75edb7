"""Property tests (hypothesis) for what untrusted input reaches first.

- ``parse_hook_event`` on arbitrary JSON: a model or ``HookInputError``, never another exception;
- ``render_event`` (as delivery calls it, with the catch-up marker) on arbitrary parsed events and
  contexts: content a homeserver accepts, under the size limit, pinging nobody unasked;
- transcript parsing and catch-up on arbitrary transcript lines: never raises, and what it
  recovers parses and renders like any hook event.

``tests/unit/render/test_render_properties.py`` (the renderer's own) goes deep per event kind;
these go wide: any field of any event may hold any JSON.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_bridge.catchup import missing_items, shown_by, synthetic_events, with_catchup_marker
from claude_bridge.catchup.transcript import parse_items
from claude_bridge.events.catalogue import CATALOGUE
from claude_bridge.events.models import HookEvent
from claude_bridge.events.parse import HookInputError, parse_hook_event
from claude_bridge.render import OutboundMessage, RenderContext, render_event

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MATRIX_EVENT_LIMIT = 65_536

text = st.text(st.characters(codec="utf-8"), max_size=60)
any_text = st.one_of(text, st.text(max_size=30))  # the second may hold lone surrogates
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=15,
)
EVENT_MODELS = {kind.name: kind.model for kind in CATALOGUE}
EVENT_NAMES = [*EVENT_MODELS, "SomeFutureEvent"]
# Every field any model declares, so typed fields get wrong types as often as right ones.
FIELDS = sorted({f for model in EVENT_MODELS.values() for f in model.model_fields})


@st.composite
def hook_objects(draw: st.DrawFn) -> dict[str, Any]:
    data = draw(st.dictionaries(st.sampled_from(FIELDS) | text, json_values, max_size=8))
    if draw(st.booleans()):
        data["hook_event_name"] = draw(st.sampled_from(EVENT_NAMES))
    if draw(st.booleans()):
        data["session_id"] = draw(st.uuids().map(str) | text)
    return data


@SETTINGS
@given(st.one_of(json_values, hook_objects()))
def test_parse_hook_event_returns_a_model_or_says_why(data: Any) -> None:
    try:
        event = parse_hook_event(data)
    except HookInputError as e:
        assert str(e)
        return
    assert isinstance(event, HookEvent) and event.session_id and event.hook_event_name
    if isinstance(data, dict) and data.get("hook_event_name") in EVENT_MODELS:
        assert type(event) is EVENT_MODELS[data["hook_event_name"]]


def value_of(annotation: Any) -> st.SearchStrategy[Any]:
    options = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    kind = getattr(annotation, "__origin__", annotation)
    if options and kind not in (dict, list):  # X | None
        return st.none() | value_of(options[0])
    return {
        str: text,  # pydantic refuses lone surrogates in typed strings
        int: st.integers(-(2**40), 2**40),
        bool: st.booleans(),
        dict: st.dictionaries(text, json_values, max_size=5),
        list: st.lists(st.dictionaries(text, json_values, max_size=3), max_size=3),
    }.get(kind, json_values)


@st.composite
def parsed_events(draw: st.DrawFn) -> HookEvent:
    """Events that pass parse_hook_event: the required fields set, the rest arbitrary."""
    name = draw(st.sampled_from(EVENT_NAMES))
    model = EVENT_MODELS.get(name, HookEvent)
    data = draw(hook_objects())
    for field, info in model.model_fields.items():
        if draw(st.booleans()):  # typed fields with a value of their type, half of the time
            data[field] = draw(value_of(info.annotation))
    data.update(hook_event_name=name, session_id=draw(st.uuids().map(str)))
    try:
        return parse_hook_event(data)
    except HookInputError:
        return parse_hook_event({"session_id": data["session_id"], "hook_event_name": name})


contexts = st.builds(
    RenderContext,
    thread_id=st.uuids().map(str),
    project=any_text,
    operators=st.lists(st.sampled_from(["@alice:localhost", "@bob:example.org"]), max_size=2).map(
        tuple
    ),
    mirror=st.sampled_from([None, {"tool_output": "inline"}, {"max_content_bytes": 4096}]),
    title=st.none() | any_text,
    stream_text=st.none() | any_text,
    stream_anchor=st.none() | st.just("stream:m"),
)
render = with_catchup_marker(render_event)


def assert_matrix_valid(messages: list[OutboundMessage], ctx: RenderContext) -> None:
    for msg in messages:
        encoded = json.dumps(msg.content, ensure_ascii=False).encode("utf-8")  # must not raise
        assert len(encoded) < MATRIX_EVENT_LIMIT - 4096, len(encoded)
        if msg.state_key is None:
            assert msg.event_type == "m.room.message"
            assert isinstance(msg.content["msgtype"], str) and isinstance(msg.content["body"], str)
            mentions = msg.content["m.mentions"]
            # Only the configured operators are ever pinged, never someone named in the text.
            assert set(mentions.get("user_ids", [])) <= set(ctx.operators)
            assert "room" not in mentions
            html = msg.content.get("formatted_body", "").lower()
            assert "<script" not in html and "javascript:" not in html


@SETTINGS
@given(parsed_events(), contexts)
def test_render_event_makes_valid_content_for_anything_that_parsed(
    event: HookEvent, ctx: RenderContext
) -> None:
    assert_matrix_valid(render(event, ctx), ctx)


transcript_lines = st.lists(
    st.one_of(
        json_values.map(json.dumps),
        st.fixed_dictionaries(
            {
                "type": st.sampled_from(["user", "assistant", "summary"]),
                "sessionId": st.just("s"),
                "uuid": st.uuids().map(str),
                "timestamp": st.sampled_from(["2026-11-24T09:00:00.000Z", "", "garbage"]),
                "message": st.fixed_dictionaries(
                    {
                        "content": any_text
                        | st.lists(
                            st.fixed_dictionaries(
                                {
                                    "type": st.sampled_from(
                                        ["text", "tool_use", "tool_result", "image"]
                                    ),
                                    "text": any_text,
                                    "id": text,
                                    "tool_use_id": text,
                                    "name": text,
                                    "input": json_values,
                                    "content": json_values,
                                    "is_error": json_values,
                                }
                            ),
                            max_size=3,
                        )
                    }
                ),
            }
        ).map(json.dumps),
        text,
    ),
    max_size=12,
)


@SETTINGS
@given(transcript_lines, st.lists(hook_objects(), max_size=4), contexts)
def test_catch_up_from_any_transcript_renders_valid_content(
    lines: list[str], stored: list[dict[str, Any]], ctx: RenderContext
) -> None:
    items = parse_items("\n".join(lines).encode("utf-8", "surrogatepass"), "s")
    gap = missing_items(items, shown_by(stored), {})
    event = parse_hook_event({"session_id": "s", "hook_event_name": "Stop"})
    for data in synthetic_events(gap, 0, event):
        recovered = parse_hook_event(json.loads(json.dumps(data)))
        assert_matrix_valid(render(recovered, ctx), ctx)
