"""Building blocks of Matrix content shared by the renderers, and the render environment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from claude_bridge.config.sections.mirror import MirrorConfig
from claude_bridge.events.models import HookEvent
from claude_bridge.ids import subagent_speaker
from claude_bridge.render.messages import RenderContext
from claude_bridge.render.scrub import Scrubber
from claude_bridge.render.text import esc, one_line

NO_MENTIONS: dict[str, Any] = {}


@dataclass(frozen=True)
class Env:
    """What every renderer gets besides the event: the thread, its options, the scrubber."""

    ctx: RenderContext
    opts: MirrorConfig
    scrub: Scrubber

    def budget(self, *, edit: bool = False) -> int:
        """Bytes one message's content may take; an edit carries its text twice."""
        # Leave room for what delivery adds (relations, "* " prefixes, m.new_content wrapper).
        budget = self.opts.max_content_bytes - 1024
        return budget // 2 if edit else budget


def message(
    body: str,
    html: str | None = None,
    *,
    msgtype: str = "m.notice",
    mentions: Sequence[str] = (),
) -> dict[str, Any]:
    """``m.room.message`` content; ``m.mentions`` is always present so nothing pings by accident."""
    content: dict[str, Any] = {"msgtype": msgtype, "body": body}
    if html is not None and html != esc(body):
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = html
    content["m.mentions"] = {"user_ids": list(mentions)} if mentions else dict(NO_MENTIONS)
    return content


def file_message(filename: str, size: int, mimetype: str = "text/plain") -> dict[str, Any]:
    """``m.file`` content; delivery uploads the attachment and fills in ``url``."""
    return {
        "msgtype": "m.file",
        "body": filename,
        "filename": filename,
        "info": {"mimetype": mimetype, "size": size},
        "m.mentions": dict(NO_MENTIONS),
    }


def project_dir(event: HookEvent, env: Env) -> str | None:
    """The session's project directory, which paths in it are shown relative to: the thread's
    (where the session started; delivery passes it as ``cwd``), else the event's ``cwd``. One
    base for the whole room, even after Claude changes directory."""
    for cwd in (env.ctx.extra.get("cwd"), event.cwd):
        if isinstance(cwd, str) and cwd:
            return cwd
    return None


def pill(user_id: str, name: str | None = None) -> str:
    """An HTML link to ``user_id`` (a pill in clients), shown as ``name`` or its localpart. It
    pings nobody by itself: who is mentioned is the content's ``m.mentions``."""
    label = name or (user_id[1:].split(":", 1)[0] if user_id.startswith("@") else user_id)
    href = "https://matrix.to/#/" + quote(user_id, safe="@:")
    return f'<a href="{esc(href)}">{esc(label or user_id)}</a>'


def operators(env: Env) -> list[str]:
    """The user ids a ping goes to (deduplicated, in configured order)."""
    if not env.opts.mention_operators:
        return []
    return list(dict.fromkeys(u for u in env.ctx.operators if u))


def agent_name(agent_type: str | None) -> str:
    return f"{one_line(agent_type, 60)} (subagent)" if agent_type else "Subagent"


def speaker(event: HookEvent) -> tuple[str | None, str | None]:
    """(sender, displayname) for an event: a subagent's own ghost when the event comes from one."""
    agent_id = getattr(event, "agent_id", None) or event.extra.get("agent_id")
    if not isinstance(agent_id, str) or not agent_id:
        return None, None
    agent_type = getattr(event, "agent_type", None) or event.extra.get("agent_type")
    return subagent_speaker(agent_id), agent_name(
        agent_type if isinstance(agent_type, str) else None
    )
