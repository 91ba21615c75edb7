"""Which Matrix events are the bridge's own echoes.

Every message a ghost or the bot sends comes back in a transaction. Those echoes are neither
stored nor acted on (no loops) — except a hand-off: a message one session's ghost posts into
another thread's room through the threads API / MCP (``claude_send_to_thread``), marked with
``HANDOFF_FIELD``. The mark is only a claim: anyone can put it in a message. It counts only on a
message sent by the ghost of the very thread it names (``control/handoffs.py`` checks that; only
the bridge can send as its ghosts, an exclusive namespace). On anyone else's event it means
nothing: their message is an ordinary one, and the ordinary role check applies.
"""

from __future__ import annotations

from typing import Any

from claude_bridge.ids import MatrixNames

HANDOFF_FIELD = "org.claude_bridge.from_thread"


def handoff_from(event: dict[str, Any]) -> str | None:
    """The thread a message claims to be a hand-off from (unverified), or None."""
    content = event.get("content")
    value = content.get(HANDOFF_FIELD) if isinstance(content, dict) else None
    return value if isinstance(value, str) and value else None


class EchoFilter:
    def __init__(self, names: MatrixNames) -> None:
        self.names = names

    def is_echo(self, event: dict[str, Any]) -> bool:
        sender = event.get("sender")
        if not isinstance(sender, str) or not self.names.is_bridge_user(sender):
            return False
        return event.get("type") != "m.room.message" or handoff_from(event) is None
