"""Matrix events as the bridge reads them: each stored event parsed once (``parse``) into the
record of its kind, so what acts on it never looks into raw JSON.

Parsing is strict about types (an id that is not a string is no id) and never raises: a field
that is missing or malformed reads as absent, and an event that cannot be read as its kind is a
plain ``Inbound``, which nothing acts on. The kinds follow the order the bridge acts in:
membership, encryption and any other state first (``RoomGuard``), then messages (of them, edits),
reactions and redactions (``InboundHandler``).

Why not mautrix's ``Event.deserialize``: it does not check field types (a numeric ``body`` or
``event_id`` passes), raises on what it does not know (an unknown membership) or what a
transaction may leave out (``origin_server_ts``), and an edit whose ``m.new_content`` it cannot
read turns the whole content into a plain dict. Each of those would need a check around it here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HANDOFF_FIELD = "org.claude_bridge.from_thread"
"""A message's claim to be a hand-off from another thread (see ``matrix/echo.py``)."""


@dataclass(frozen=True)
class Inbound:
    """Any event: where, from whom. On its own: a kind the bridge does not act on."""

    event_id: str
    room_id: str
    sender: str
    type: str
    handoff_claim: str | None
    """The thread an ``m.room.message`` claims to come from (unverified: anyone can write it)."""


@dataclass(frozen=True)
class Membership(Inbound):
    target: str | None
    """The user whose membership it is (the state key)."""
    membership: str | None
    is_direct: bool


@dataclass(frozen=True)
class Encryption(Inbound):
    """Someone turned on end-to-end encryption."""


@dataclass(frozen=True)
class StateChange(Inbound):
    """Any other state event: power levels, join rules, history visibility, …"""


@dataclass(frozen=True)
class Message(Inbound):
    msgtype: str | None
    body: str | None
    """``None`` when the content has no string body: nothing to read."""
    text: str
    """What the person wrote: the body stripped, and a reply's quote of the original dropped."""
    reply_to: str | None
    has_relation: bool
    """Whether the content carries ``m.relates_to`` at all (a hand-off never does)."""


FILE_MSGTYPES = frozenset({"m.image", "m.file", "m.video", "m.audio"})


@dataclass(frozen=True)
class FileMessage(Message):
    """An ``m.image``, ``m.file``, ``m.video`` or ``m.audio``: a file in the media repository."""

    url: str | None
    """Its ``mxc://`` URL; None when absent, or when the file is encrypted (``file`` instead)."""
    filename: str
    """The file's name: ``filename``, else the body."""
    caption: str
    """What the person wrote with it: the body when ``filename`` names the file apart."""
    mimetype: str | None
    size: int | None
    """The size the sender's client declared (unchecked: the download is what counts)."""
    encrypted: bool


@dataclass(frozen=True)
class Edit(Message):
    """A message that replaces an earlier one (``m.replace``)."""

    replaces: str | None
    new_body: str | None


@dataclass(frozen=True)
class Reaction(Inbound):
    target: str | None
    """The event reacted to; None unless it is an ``m.annotation`` with an event id."""
    key: str | None


@dataclass(frozen=True)
class Redaction(Inbound):
    redacts: str | None


def strip_reply_fallback(body: str) -> str:
    """Drop the ``> <@user> quoted`` lines clients put before a reply's own text."""
    lines = body.split("\n")
    while lines and lines[0].startswith(">"):
        lines.pop(0)
    return "\n".join(lines).strip()


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def parse(event: dict[str, Any]) -> Inbound:
    """The record of ``event``'s kind (a raw event as the homeserver sent it)."""
    kind = _str(event.get("type")) or ""
    raw_content = event.get("content")
    content: dict[str, Any] = raw_content if isinstance(raw_content, dict) else {}
    claim = _str(content.get(HANDOFF_FIELD)) if kind == "m.room.message" else None
    fields: dict[str, Any] = {
        "event_id": _str(event.get("event_id")) or "",
        "room_id": _str(event.get("room_id")) or "",
        "sender": _str(event.get("sender")) or "",
        "type": kind,
        "handoff_claim": claim or None,
    }
    if kind == "m.room.member":
        return Membership(
            **fields,
            target=_str(event.get("state_key")),
            membership=_str(content.get("membership")),
            is_direct=bool(content.get("is_direct")),
        )
    if kind == "m.room.encryption":
        return Encryption(**fields)
    if isinstance(event.get("state_key"), str):
        return StateChange(**fields)
    if kind == "m.room.message":
        return _message(fields, content)
    if kind == "m.reaction":
        relates = content.get("m.relates_to") or {}
        if not isinstance(relates, dict) or relates.get("rel_type") != "m.annotation":
            return Reaction(**fields, target=None, key=None)
        return Reaction(
            **fields, target=_str(relates.get("event_id")), key=_str(relates.get("key"))
        )
    if kind == "m.room.redaction":
        # Top-level before room version 11, in the content from then on.
        return Redaction(**fields, redacts=_str(event.get("redacts") or content.get("redacts")))
    return Inbound(**fields)


def _message(fields: dict[str, Any], content: dict[str, Any]) -> Inbound:
    body, msgtype = _str(content.get("body")), _str(content.get("msgtype"))
    relates = content.get("m.relates_to") or {}
    if not isinstance(relates, dict):
        return Inbound(**fields)  # a relation nobody can follow: nothing to act on
    has_relation = "m.relates_to" in content
    if relates.get("rel_type") == "m.replace":
        new = content.get("m.new_content") or {}
        return Edit(
            **fields,
            msgtype=msgtype,
            body=body,
            text=(body or "").strip(),
            reply_to=None,
            has_relation=has_relation,
            replaces=_str(relates.get("event_id")),
            new_body=_str(new.get("body")) if isinstance(new, dict) else None,
        )
    replying = relates.get("m.in_reply_to") or {}
    if not isinstance(replying, dict):
        return Inbound(**fields)
    marker = replying.get("event_id")
    text = "" if body is None else strip_reply_fallback(body) if marker else body.strip()
    if msgtype in FILE_MSGTYPES and body is not None:
        return _file(fields, content, body, _str(marker), has_relation)
    return Message(
        **fields,
        msgtype=msgtype,
        body=body,
        text=text,
        reply_to=_str(marker),
        has_relation=has_relation,
    )


def _file(
    fields: dict[str, Any], content: dict[str, Any], body: str, reply_to: str | None, related: bool
) -> FileMessage:
    info = content.get("info")
    info = info if isinstance(info, dict) else {}
    size = info.get("size")
    named = _str(content.get("filename"))
    caption = body.strip() if named and body != named else ""
    return FileMessage(
        **fields,
        msgtype=_str(content.get("msgtype")),
        body=body,
        text=caption,
        reply_to=reply_to,
        has_relation=related,
        url=_str(content.get("url")),
        filename=named or body,
        caption=caption,
        mimetype=_str(info.get("mimetype")),
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        encrypted="file" in content and "url" not in content,
    )
