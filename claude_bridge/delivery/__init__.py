"""The outbox worker: persisted hook events → Matrix, in order per thread, never twice.

One task per thread with pending events (so a slow thread never holds up another), a global cap on
concurrent sends, and for each hook event:

1. render it to Matrix messages (pure, deterministic for the same event; ``context.py`` gives the
   renderer what it needs from the store),
2. send each message not yet recorded with the transaction id ``cb.<hook event id>.<part>`` — a retry
   after a lost answer reuses it, and Synapse answers with the event it already has; since Synapse
   forgets those ids when it restarts, a send that may have got through unanswered is first
   looked up in the room (``sending.py``, ``matrix/txn_lookup.py``),
3. record each event id as it is sent, and mark the hook event sent after the last part.

When several events are queued, a run of tool-call lines goes out as one merged message, and their
small outputs as one reply in its thread (``merging.py``, ``coalesce.py``).

Temporary failures (homeserver down, 5xx, 429, timeouts) are retried with backoff, honouring
``retry_after_ms``; a permanent rejection of a part is replaced by a visible notice. Outages
(homeserver or database away) are reported through ``on_failure``; whoever watches for their end
calls ``resume()``, which cuts every retry's backoff short (``matrix/recovery.py``).
"""

from __future__ import annotations

from claude_bridge.delivery.worker import Delivery

__all__ = ["Delivery"]
