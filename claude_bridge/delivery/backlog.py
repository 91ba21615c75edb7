"""The per-thread backlog cap (``bridge.mirror.backlog_events``): a room that falls far behind its
session skips the oldest detail instead of replaying all of it.

Hook events are stored as they come (the acknowledgement contract does not change); a session
can post far faster than a homeserver takes messages (1,500 events in 1.5 s), or a token can flood
one thread. When the worker finds more than the cap waiting, it folds the oldest of them: every
event but the newest ``cap / 2`` (and the outputs right after those, so no output loses its call)
whose kind is not in :data:`ALWAYS_SENT` gets state ``folded`` — kept in the store, never sent.
The first folded event becomes the notice that tells the room how many were folded, at the place
where folding began; what people must see keeps its place after it, in order. While the thread
stays behind, later folds edit that notice with the new totals instead of posting another.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from claude_bridge import metrics
from claude_bridge.catchup.marker import CATCHUP_EVENT
from claude_bridge.events.catalogue import NEVER_FOLDED, kind_of
from claude_bridge.ids import ThreadID
from claude_bridge.log import get_logger
from claude_bridge.render.messages import OutboundMessage
from claude_bridge.render.notices import folded_notice
from claude_bridge.store import Outbox, PendingEvent
from claude_bridge.store.outbox import Waiting

log = get_logger("delivery")

ALWAYS_SENT = NEVER_FOLDED | {CATCHUP_EVENT}
"""Never folded: what a person must see (the catalogue's ``foldable=False`` kinds, and the
catch-up marker). Everything else (tool calls, their output, one-line notices, events this
version does not know) may be."""


@dataclass(frozen=True)
class FoldPlan:
    carrier: int
    """The first folded event: it is sent as the notice."""
    last: int
    kinds: Counter[str]
    """Folded events (the carrier included) by hook event name."""


def plan_fold(waiting: Sequence[Waiting], keep: int) -> FoldPlan | None:
    """What to fold of a thread's pending events (oldest first) so at most ``keep`` of the
    newest remain unfolded, besides what is always sent; None when nothing can be folded."""
    end = max(len(waiting) - keep, 0)
    # Tool output right after the stretch is folded with the calls before it.
    while 0 < end < len(waiting) and kind_of(waiting[end].event_name).follows_call:
        end += 1
    folded = [w for w in waiting[:end] if w.event_name not in ALWAYS_SENT and not w.carrier]
    if not folded:
        return None
    return FoldPlan(folded[0].id, waiting[end - 1].id, Counter(w.event_name for w in folded))


@dataclass
class Episode:
    """One stretch of a thread being behind: one notice, edited as more is folded."""

    kinds: Counter[str] = field(default_factory=Counter)
    anchor: str | None = None
    """The notice's anchor once it is in the room (later folds edit it); None before."""


class BacklogCap:
    def __init__(self, outbox: Outbox, cap: int) -> None:
        self.outbox = outbox
        self.cap = cap
        self._episodes: dict[ThreadID, Episode] = {}

    async def check(
        self, thread_id: ThreadID, batch: list[PendingEvent], batch_size: int
    ) -> list[PendingEvent]:
        """``batch`` (the thread's oldest pending events), or after a fold the new oldest."""
        if len(batch) < batch_size and len(batch) <= self.cap:
            return batch  # all that waits is in the batch, and it is under the cap
        try:
            waiting = await self.outbox.waiting(thread_id)
            if len(waiting) <= self.cap:
                return batch
            plan = plan_fold(waiting, self.cap // 2)
            if plan is None:
                return batch
            episode = self._episodes.get(thread_id)
            if episode is None or episode.anchor is None:
                episode = self._episodes[thread_id] = Episode()
            kinds = episode.kinds + plan.kinds
            notice = json.dumps({"kinds": kinds, "edits": episode.anchor})
            await self.outbox.fold(thread_id, plan.carrier, plan.last, ALWAYS_SENT, notice)
            episode.kinds = kinds
        except Exception as e:  # the database is away: deliver everything, as before the cap
            log.warning("could not fold a backlog", thread_id=thread_id, error=repr(e))
            return batch
        folded = sum(plan.kinds.values())
        metrics.FOLDED_EVENTS.inc(folded)
        log.warning(
            "room fell behind its session: oldest detail folded",
            thread_id=thread_id,
            waiting=len(waiting),
            folded=folded,
            cap=self.cap,
        )
        return await self.outbox.pending(thread_id, batch_size)

    def notice(self, event: PendingEvent) -> list[OutboundMessage]:
        """What a carrier (``event.folded`` set) is sent as."""
        data = json.loads(event.folded or "{}")
        kinds = data.get("kinds") if isinstance(data, dict) else None
        edits = data.get("edits") if isinstance(data, dict) else None
        counts = {str(k): v for k, v in (kinds or {}).items() if isinstance(v, int) and v > 0}
        return [
            folded_notice(
                counts,
                replaces=edits if isinstance(edits, str) else None,
                anchor=f"fold:{event.id}",
            )
        ]

    def sent(self, event: PendingEvent) -> None:
        """A carrier's notice is in the room: the next fold of this stretch edits it."""
        episode = self._episodes.get(event.thread_id)
        if episode is not None and episode.anchor is None:
            episode.anchor = f"fold:{event.id}"

    def caught_up(self, thread_id: ThreadID) -> None:
        """Nothing waits any more: a later backlog gets a notice of its own."""
        self._episodes.pop(thread_id, None)
