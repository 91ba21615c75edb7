"""The Matrix events each hook event became (``sent_event``), and the merged messages that hold
several hook events' lines (``merged_message``).

Delivery records each part as it is sent, so a restart resumes at the next part; recording an
event's last part also marks the event sent in the outbox, in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from mautrix.util.async_db import Database

from claude_bridge.store.database import now_ms
from claude_bridge.store.merged_lines import Line, dump_lines, load_lines
from claude_bridge.store.outbox import MARK_SENT
from claude_bridge.store.writes import Write, write_atomically

_INSERT_SENT = (
    "INSERT INTO sent_event (hook_event_id, part, thread_id, anchor, event_id) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
)


class SentEvents:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def sent_parts(self, hook_event_id: int) -> dict[int, str]:
        rows = await self.db.fetch(
            "SELECT part, event_id FROM sent_event WHERE hook_event_id=$1", hook_event_id
        )
        return {r["part"]: r["event_id"] for r in rows}

    async def record_part(
        self,
        hook_event_id: int,
        part: int,
        thread_id: str,
        anchor: str | None,
        event_id: str,
        *,
        last: bool = False,
    ) -> None:
        """Record one sent part; ``last``: it was the event's last, so the event is sent too
        (one transaction: no window where the event is sent but the part unrecorded)."""
        args = (hook_event_id, part, thread_id, anchor, event_id)
        if not last:
            await self.db.execute(_INSERT_SENT, *args)
            return
        sent = Write(MARK_SENT, (hook_event_id, now_ms()))
        await write_atomically(self.db, [Write(_INSERT_SENT, args), sent])

    async def record_lines(
        self, thread_id: str, event_id: str, lines: list[Line], complete: Sequence[int] = ()
    ) -> None:
        """A merged message (``coalesce.py``) was sent: record each line as its hook event's part,
        and the lines themselves, in one transaction (all of it is in the room, or none).
        ``complete``: hook events that were nothing but their line, now sent."""
        rows = [(x.hook_event, x.part, thread_id, x.anchor, event_id) for x in lines]
        await self._record_merged(rows, complete, (event_id, thread_id, dump_lines(lines)))

    async def record_parts(
        self,
        thread_id: str,
        event_id: str,
        parts: Sequence[tuple[int, int]],
        complete: Sequence[int] = (),
    ) -> None:
        """A merged thread reply was sent: record it as each (hook event, part) it holds."""
        rows = [(hook_event, part, thread_id, None, event_id) for hook_event, part in parts]
        await self._record_merged(rows, complete, None)

    async def _record_merged(
        self,
        rows: Sequence[tuple[int, int, str, str | None, str]],
        complete: Sequence[int],
        merged: tuple[str, str, str] | None,
    ) -> None:
        writes = [Write(_INSERT_SENT, rows=rows)]
        if merged is not None:
            writes.append(
                Write(
                    "INSERT INTO merged_message (event_id, thread_id, lines) VALUES ($1, $2, $3) "
                    "ON CONFLICT (event_id) DO NOTHING",
                    merged,
                )
            )
        if complete:
            marks = ", ".join(f"${i + 2}" for i in range(len(complete)))
            writes.append(
                Write(
                    "UPDATE hook_event SET state='sent', sent_at=$1, last_error=NULL "
                    f"WHERE id IN ({marks})",
                    (now_ms(), *complete),
                )
            )
        await write_atomically(self.db, writes)

    async def set_lines(self, event_id: str, lines: list[Line]) -> None:
        await self.db.execute(
            "UPDATE merged_message SET lines=$2 WHERE event_id=$1", event_id, dump_lines(lines)
        )

    async def anchor_target(
        self, thread_id: str, anchor: str
    ) -> tuple[str | None, list[Line] | None]:
        """The first event recorded under ``anchor`` (edits refer to the original) and, when it
        is a merged message, its lines."""
        row = await self.db.fetchrow(
            "SELECT s.event_id, m.lines FROM sent_event s "
            "LEFT JOIN merged_message m ON m.event_id = s.event_id "
            "WHERE s.thread_id=$1 AND s.anchor=$2 ORDER BY s.hook_event_id, s.part LIMIT 1",
            thread_id,
            anchor,
        )
        if row is None:
            return None, None
        return row["event_id"], load_lines(row["lines"]) if row["lines"] else None

    async def sent_event_ids(self, hook_ids: Sequence[int]) -> dict[int, list[str]]:
        """The Matrix event ids each of ``hook_ids`` became, in part order."""
        if not hook_ids:
            return {}
        marks = ", ".join(f"${i}" for i in range(1, len(hook_ids) + 1))
        rows = await self.db.fetch(
            f"SELECT hook_event_id, event_id FROM sent_event WHERE hook_event_id IN ({marks}) "
            "ORDER BY hook_event_id, part",
            *hook_ids,
        )
        found: dict[int, list[str]] = {}
        for r in rows:
            found.setdefault(r["hook_event_id"], []).append(r["event_id"])
        return found
