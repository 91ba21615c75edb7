"""Which Matrix events are the bridge's own echoes.

Every message a ghost or the bot sends comes back in a transaction. Those echoes are neither
stored nor acted on (no loops) — except a hand-off: a message one session's ghost posts into
another thread's room through the threads API / MCP (``claude_send_to_thread``), marked with
``HANDOFF_FIELD``. Only the bridge can send as its ghosts (an exclusive namespace), so the mark
can be trusted on a ghost's event and is ignored on anyone else's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

HANDOFF_FIELD = "org.claude_bridge.from_thread"


def handoff_from(event: dict[str, Any]) -> str | None:
    """The sending thread of a hand-off message, or None."""
    content = event.get("content")
    value = content.get(HANDOFF_FIELD) if isinstance(content, dict) else None
    return value if isinstance(value, str) and value else None


class EchoFilter:
    def __init__(self, is_bridge_user: Callable[[str], bool]) -> None:
        self.is_bridge_user = is_bridge_user

    def is_echo(self, event: dict[str, Any]) -> bool:
        sender = event.get("sender")
        if not isinstance(sender, str) or not self.is_bridge_user(sender):
            return False
        return handoff_from(event) is None
