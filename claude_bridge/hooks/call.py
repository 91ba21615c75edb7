"""What the hook answer's author may know about the HTTP call an event arrived on.

The responder composes answers without seeing aiohttp: it gets the stored event's id, the token
the event came with, whether anyone waits for the answer at all (a spooled replay: nobody does),
and a probe telling whether Claude Code still holds the connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from claude_bridge.ids import HookEventID


def _always() -> bool:
    return True


@dataclass(frozen=True)
class HookCall:
    hook_event_id: HookEventID
    token_name: str | None = None
    replayed: bool = False
    """The shim replays a spooled event: its answer goes nowhere, so it must carry nothing."""
    connected: Callable[[], bool] = _always
    """False once the client closed the connection (a held answer then has nobody to go to)."""
    files_root: str | None = None
    """A command path's ``X-Claude-Bridge-Files`` header: it writes files from Matrix itself,
    under this root on its host (``host_files``)."""
    local: bool = False
    """The token is marked local: Claude Code runs on the bridge's machine."""
    untaken: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """How to take back what the answer carries (an operator's messages) should the client's
    host never acknowledge it (``hooks/receipt.py``): the answer's author adds to it."""
