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

from claude_bridge.ids import MatrixNames
from claude_bridge.matrix.inbound_events import HANDOFF_FIELD, Inbound

__all__ = ["HANDOFF_FIELD", "EchoFilter"]


class EchoFilter:
    def __init__(self, names: MatrixNames) -> None:
        self.names = names

    def is_echo(self, event: Inbound) -> bool:
        return self.names.is_bridge_user(event.sender) and event.handoff_claim is None
