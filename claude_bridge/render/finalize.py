"""The last step every rendered message goes through: scrub, clean, bound.

Renderers already work on a scrubbed copy of the event; this pass scrubs the finished content
and attachment again so a secret can only reach Matrix if *both* passes miss it, and enforces the
size limit whatever a renderer built. Scrubbing comes before the size check, so sizes are final.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from claude_bridge.render.content import NO_MENTIONS, Env
from claude_bridge.render.messages import TEXT_MIMETYPES, OutboundMessage
from claude_bridge.render.trim import limit

_MESSAGE = "m.room.message"


def finalize(msg: OutboundMessage, env: Env) -> OutboundMessage:
    content = _scrub_content(msg.content, env)
    attachment = msg.attachment
    if attachment is not None:
        # Text is scrubbed again; an image's bytes pass as they are (docs/security.md).
        text = attachment.mimetype.startswith(TEXT_MIMETYPES)
        data = env.scrub.data(attachment.data) if text else attachment.data
        filename = env.scrub.text(attachment.filename)
        attachment = dataclasses.replace(attachment, data=data, filename=filename)
        info = content.get("info")
        if isinstance(info, dict):  # The size announced must be the size uploaded.
            content["info"] = {**info, "size": len(data)}
    if msg.event_type == _MESSAGE:
        content.setdefault("msgtype", "m.notice")
        content.setdefault("body", "")
        content.setdefault("m.mentions", dict(NO_MENTIONS))
    content = limit(content, env.budget(edit=msg.replaces is not None))
    return dataclasses.replace(
        msg,
        content=content,
        attachment=attachment,
        sender_displayname=(
            env.scrub.text(msg.sender_displayname) if msg.sender_displayname else None
        ),
    )


def _scrub_content(content: dict[str, Any], env: Env) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in content.items():
        # Mentions are operator ids from the config: never rewrite who gets pinged.
        out[key] = value if key == "m.mentions" else env.scrub.value(value)
    return out
