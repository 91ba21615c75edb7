"""Did a send reach the homeserver after all? Asked before re-sending after an uncertain failure.

Delivery reuses the transaction id ``cb.<hook event>.<part>`` on every retry, but Synapse keeps
transaction ids of appservice sends (which have no device) only in memory, for 30 minutes: once
it has restarted, a retried ``PUT …/send/<type>/<txn>`` makes a second event. So when a send may
have been stored without its answer reaching us (timeout, reset, 5xx, our own crash), delivery
first looks among the sender's latest events in the room: Synapse shows an appservice the
``unsigned.transaction_id`` of the events it sent.
"""

from __future__ import annotations

import json
from typing import Any

from claude_bridge.matrix.client import MatrixClient, quote

LOOKBACK = 50
"""The lost send is the sender's newest event of its type in the room (a thread's parts go out
one at a time), so a short look back is plenty; it leaves room for a few sent since by others."""


async def find_sent(
    client: MatrixClient,
    user_id: str,
    room_id: str,
    event_type: str,
    txn_id: str,
    *,
    lookback: int = LOOKBACK,
    or_prefix: str | None = None,
) -> dict[str, Any] | None:
    """The event ``user_id`` sent to ``room_id`` with ``txn_id`` (or one starting with
    ``or_prefix``: a merged message that began with this part), if there is one."""
    room_filter = json.dumps({"senders": [user_id], "types": [event_type]})
    resp = await client.request(
        "GET",
        f"/_matrix/client/v3/rooms/{quote(room_id)}/messages",
        user_id=user_id,
        query={"dir": "b", "limit": str(lookback), "filter": room_filter},
    )
    for event in resp.get("chunk", []):
        unsigned = event.get("unsigned") if isinstance(event, dict) else None
        if not isinstance(unsigned, dict):
            continue
        sent_as = unsigned.get("transaction_id")
        if sent_as == txn_id or (
            or_prefix and isinstance(sent_as, str) and sent_as.startswith(or_prefix)
        ):
            return event
    return None
