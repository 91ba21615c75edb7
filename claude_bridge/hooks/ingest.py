"""Accepting a hook event: make it durable (thread row + outbox row, one transaction), then wake
delivery. Nothing is acknowledged to Claude Code before the commit.
"""

from __future__ import annotations

from collections.abc import Callable

from mautrix.util.async_db import Database
from mautrix.util.async_db.connection import LoggingConnection

from claude_bridge.hooks.models import HookEvent
from claude_bridge.ids import HookEventID, ThreadID, thread_id_for
from claude_bridge.router import ThreadRouter
from claude_bridge.store import Outbox, Thread, ThreadStore


class Ingest:
    def __init__(
        self,
        db: Database,
        threads: ThreadStore,
        outbox: Outbox,
        router: ThreadRouter,
        notify: Callable[[ThreadID], None],
    ) -> None:
        self.db = db
        self.threads = threads
        self.outbox = outbox
        self.router = router
        self.notify = notify
        # Threads known to exist: the hot path then costs a single INSERT.
        self._known: dict[ThreadID, Thread] = {}

    async def accept(
        self, event: HookEvent, payload: str, token_name: str | None
    ) -> tuple[Thread, HookEventID]:
        thread_id = thread_id_for(event.session_id)
        conn: LoggingConnection
        async with self.db.acquire() as conn, conn.transaction():
            thread = self._known.get(thread_id)
            if thread is None or thread.session_id != event.session_id:
                thread = await self.threads.ensure(self.router.new_thread(event, token_name))
            hook_event_id = await self.outbox.append(
                thread.id, event.hook_event_name, payload, token_name
            )
        self._known[thread.id] = thread
        self.notify(thread.id)
        return thread, hook_event_id
