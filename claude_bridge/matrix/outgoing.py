"""What of a request body to the homeserver is scrubbed: the one choke point for secrets.

``MatrixClient.request`` passes every JSON body (events, state, createRoom, profiles, kick and
redaction reasons) through :func:`scrub_body` and every text upload through the scrubber, so a
path that builds content without the renderer (a command reply, an API hand-off, a room name made
from ``cwd``) cannot skip it. What is left alone are the identifiers the bridge or the homeserver
made (user, room and event ids, the alias, relations, mentions, ``mxc://`` URIs): rewriting them
would break joins, edits and power levels. Scrubbing is a pure function of the body, so a retry
with the same transaction id sends the same content.
"""

from __future__ import annotations

from typing import Any

from yarl import URL

from claude_bridge.config import GENERATE, Config
from claude_bridge.render.messages import TEXT_MIMETYPES
from claude_bridge.render.scrub import Scrubber, scrubber_for


def outgoing_scrubber(config: Config) -> Scrubber:
    """What scrubs everything leaving for Matrix or out of the API: the configured patterns
    plus the bridge's own secrets, which no pattern knows (random hex)."""
    known = [config.appservice.as_token, config.appservice.hs_token]
    known += config.hooks.secrets().values()
    if not config.database.startswith("sqlite:"):
        known.append(URL(config.database).password or "")  # the database's password
    return scrubber_for(config.bridge.mirror.redact, (k for k in known if k != GENERATE))


IDENTIFIER_KEYS = frozenset(
    {
        "m.relates_to",  # event ids: an edit or a thread reply must keep pointing at its event
        "m.mentions",  # user ids from the config
        "event_id",
        "room_id",
        "user_id",  # invite, kick, ban
        "users",  # power levels: user id → level
        "invite",  # createRoom
        "room_alias_name",
        "via",  # m.space.child / parent: server names
        "username",  # appservice registration
        "transaction_id",  # appservice ping
    }
)
"""Top-level keys of a body or of an event's content whose values are Matrix identifiers."""
_MXC_KEYS = frozenset({"url", "avatar_url", "thumbnail_url"})
# "info": an image's, whose thumbnail_url is an mxc URI too.
_CONTENT_KEYS = frozenset(
    {"m.new_content", "power_level_content_override", "creation_content", "info"}
)


def scrub_body(scrub: Scrubber, body: dict[str, Any]) -> dict[str, Any]:
    """A request body or event content with every string but its identifiers scrubbed.

    ``formatted_body`` HTML is scrubbed as text and dropped (the plain ``body`` stays) if a
    secret would show once its entities are decoded. createRoom's ``initial_state`` events keep
    their type and state key, and their content is scrubbed like an event's.
    """
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key in IDENTIFIER_KEYS or (
            key in _MXC_KEYS and isinstance(value, str) and value.startswith("mxc://")
        ):
            out[key] = value
        elif key in _CONTENT_KEYS and isinstance(value, dict):
            out[key] = scrub_body(scrub, value)
        elif key == "initial_state" and isinstance(value, list):
            out[key] = [_state_event(scrub, event) for event in value]
        elif key == "formatted_body" and isinstance(value, str):
            html = scrub.html(value)
            if html is not None:
                out[key] = html
        else:
            out[key] = scrub.value(value, key)
    if "formatted_body" in body and "formatted_body" not in out:
        out.pop("format", None)
    return out


def _state_event(scrub: Scrubber, event: Any) -> Any:
    if not isinstance(event, dict):
        return scrub.value(event)
    out: dict[str, Any] = {}
    for key, value in event.items():
        if key in ("type", "state_key"):
            out[key] = value
        elif key == "content" and isinstance(value, dict):
            out[key] = scrub_body(scrub, value)
        else:
            out[key] = scrub.value(value, key)
    return out


def scrub_upload(scrub: Scrubber, data: bytes, mimetype: str) -> bytes:
    """An upload's bytes: text is scrubbed, anything else (images) is sent as it is."""
    if mimetype.split(";", 1)[0].strip().lower().startswith(TEXT_MIMETYPES):
        return scrub.data(data)
    return data
