"""Accepting a hook event: make it durable (thread row + outbox row, one transaction), then wake
delivery. Nothing is acknowledged to Claude Code before the commit.

Also decided here, because they need the store and must happen before the commit:

- an event for a session another token owns is refused (403, :mod:`claude_bridge.token_access`);
- a new thread counts against its token's ``hooks.new_threads_per_minute`` (:class:`NewThreadLimit`)
  and ``max_threads`` (:class:`ThreadCapReached`);
- an event whose ``Idempotency-Key`` (the shim sends one per event, the same on every replay) is
  already stored for the thread is not stored again: the first attempt did arrive, Claude Code's
  answer just never got back. Without a key nothing is deduplicated: two byte-identical events
  (the same Notification twice, a second "continue") are two events;
- after a possible gap, the events recovered from the transcript (``catchup``) are stored in the
  same transaction, before this one — only for a token marked ``local``: the transcript is read
  from the bridge's own disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable

from mautrix.util.async_db import Database
from mautrix.util.async_db.connection import LoggingConnection

from claude_bridge.catchup import CatchUp, GapWatch
from claude_bridge.events.models import HookEvent
from claude_bridge.hooks.caps import ThreadCaps
from claude_bridge.hooks.limits import NewThreadLimit, TokenBuckets
from claude_bridge.ids import MAX_AGENT_FRAGMENT, HookEventID, ThreadID, thread_id_for
from claude_bridge.router import ThreadRouter
from claude_bridge.store import Outbox, Thread, ThreadStore, now_ms
from claude_bridge.store.threads import ThreadCollision
from claude_bridge.token_access import TokenAccess

MAX_MXID = 255
# The longest agent id fragment a subagent's ghost holds.
_LONGEST_AGENT = "x" * MAX_AGENT_FRAGMENT


class ThreadLocks:
    """One lock per thread, kept only while someone holds or waits for it. Shared stripes
    (the earlier 64) made unrelated sessions wait for each other's commit: with 50 sessions
    a few pairs always collide, which showed in the acknowledgement's p99."""

    def __init__(self) -> None:
        self._locks: dict[ThreadID, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, thread_id: ThreadID) -> AsyncIterator[None]:
        lock, users = self._locks.get(thread_id) or (asyncio.Lock(), 0)
        self._locks[thread_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[thread_id]
            if users == 1:
                del self._locks[thread_id]
            else:
                self._locks[thread_id] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class SessionRejected(Exception):
    """The session id cannot become a thread here; ``status`` is the HTTP answer (403, 409 or
    422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Ingest:
    def __init__(
        self,
        db: Database,
        threads: ThreadStore,
        outbox: Outbox,
        router: ThreadRouter,
        notify: Callable[[ThreadID], None],
        *,
        access: TokenAccess,
        new_threads_per_minute: int = 0,
        catchup: CatchUp | None = None,
    ) -> None:
        self.db = db
        self.threads = threads
        self.outbox = outbox
        self.router = router
        self.notify = notify
        self.catchup = catchup
        self.access = access
        self.new_threads = TokenBuckets(new_threads_per_minute)
        self.caps = ThreadCaps(
            lambda name: t.max_threads if (t := access.settings(name)) else 0,
            threads.count_owned,
        )
        self.gaps = GapWatch()
        # Threads known to exist: the hot path then costs a single INSERT.
        self._known: dict[ThreadID, Thread] = {}
        # Events of one thread are accepted one at a time, so recovered events and the event
        # that revealed the gap stay together and in order.
        self._locks = ThreadLocks()
        self._boot: asyncio.Future[None] | None = None

    async def accept(
        self,
        event: HookEvent,
        payload: str,
        token_name: str | None,
        *,
        replay: str | None = None,
        key: str | None = None,
    ) -> tuple[Thread, HookEventID]:
        """Store the event; ``replay`` is the shim's ``X-Claude-Bridge-Spooled`` header, ``key``
        its ``Idempotency-Key``."""
        thread_id = thread_id_for(event.session_id)
        self._check_length(thread_id)
        await self._learn_boot()
        async with self._locks.hold(thread_id):
            if replay and key is not None:
                found = await self._already_stored(thread_id, key)
                if found is not None:
                    self._check_owner(found[0], token_name)
                    return found
            thread = await self._thread_for(thread_id, event, token_name)
            try:
                recovered: list[dict[str, object]] = []
                window = None if replay or self.catchup is None else self.gaps.window_for(thread_id)
                if window is not None and self.catchup and self.access.is_local(token_name):
                    recovered = await self.catchup.recover(
                        thread_id, event, _loads(payload), window
                    )
                try:
                    thread, hook_event_id = await self._store(
                        thread, event, payload, token_name, recovered, key
                    )
                except SessionRejected:
                    raise
                except Exception:
                    # Claude Code's http hook drops this event: the thread's next one looks back.
                    self.gaps.failed(now_ms())
                    raise
            finally:
                self.caps.opened(token_name, thread_id)  # stored or not: the count is the store's
            if not replay:
                self.gaps.accepted(thread_id, hook_event_id)
        self._known[thread.id] = thread
        self.notify(thread.id)
        return thread, hook_event_id

    def _check_length(self, thread_id: ThreadID) -> None:
        longest = max(
            len(self.router.names.subagent_ghost(thread_id, _LONGEST_AGENT).encode()),
            len(self.router.names.alias(thread_id).encode()),
        )
        if longest > MAX_MXID:
            raise SessionRejected(
                422,
                f"session_id is too long for a Matrix id once escaped ({longest} > {MAX_MXID} "
                "bytes); use at most about 100 characters of a-z, 0-9, '.', '_' and '-'",
            )

    async def _learn_boot(self) -> None:
        """Once per process, before its first insert: where the previous run stopped."""
        if self.catchup is None:
            return
        if self._boot is None:
            self._boot = asyncio.ensure_future(self._read_boot(self.catchup))
        try:
            await asyncio.shield(self._boot)
        except Exception:
            self._boot = None  # the database is away: the next event tries again
            raise

    async def _read_boot(self, catchup: CatchUp) -> None:
        self.gaps.boot = window = await catchup.boot_window()
        self.gaps.last_id = window.since_id

    async def _thread_for(
        self, thread_id: ThreadID, event: HookEvent, token_name: str | None
    ) -> Thread | None:
        """The stored thread, or None for a new one (counted against the token's cap)."""
        thread = self._known.get(thread_id)
        if thread is None or thread.session_id != event.session_id:
            thread = await self.threads.for_session(event.session_id)
        if thread is not None and thread.session_id != event.session_id:
            raise SessionRejected(
                409,
                f"session_id {event.session_id!r} and the stored {thread.session_id!r} map to the "
                "same thread (they differ only in case)",
            )
        if thread is not None:
            self._check_owner(thread, token_name)
            if thread.project_path is None and event.cwd:
                # Made before its first hook (a host runner's `new`): now the bridge knows where
                # the session runs, as it would have from a first event.
                if await self.threads.learn_project_path(thread.id, event.cwd):
                    thread.project_path = event.cwd
                elif (stored := await self.threads.get(thread.id)) is not None:
                    thread.project_path = stored.project_path  # learnt meanwhile
            return thread
        await self.caps.open(token_name, thread_id)  # ThreadCapReached → 403
        wait = self.new_threads.take(token_name)
        if wait > 0:
            self.caps.opened(token_name, thread_id)
            raise NewThreadLimit(token_name, self.new_threads.per_minute, wait)
        return None

    def _check_owner(self, thread: Thread, token_name: str | None) -> None:
        """Only the owning token (or an admin token) speaks for a session: 403 otherwise."""
        if not self.access.may_post_events(token_name, thread.token_name):
            raise SessionRejected(
                403, self.access.refusal(thread.session_id, thread.token_name, "post events for")
            )

    async def _store(
        self,
        thread: Thread | None,
        event: HookEvent,
        payload: str,
        token_name: str | None,
        recovered: list[dict[str, object]],
        key: str | None,
    ) -> tuple[Thread, HookEventID]:
        """A key seen before stores nothing (the outbox's unique index decides) and returns the
        stored event: only a client that reuses keys without saying it replays gets here."""
        if thread is not None and not recovered:
            # The common case is one row: a single autocommitted INSERT, no BEGIN/COMMIT trips.
            return thread, await self.outbox.append(
                thread.id, event.hook_event_name, payload, token_name, key
            )
        conn: LoggingConnection
        async with self.db.acquire() as conn, conn.transaction():
            if thread is None:
                try:
                    thread = await self.threads.ensure(self.router.new_thread(event, token_name))
                except ThreadCollision as e:
                    raise SessionRejected(409, str(e)) from None
            for data in recovered:
                body = json.dumps(data, ensure_ascii=False)
                await self.outbox.append(thread.id, str(data["hook_event_name"]), body, token_name)
            hook_event_id = await self.outbox.append(
                thread.id, event.hook_event_name, payload, token_name, key
            )
        return thread, hook_event_id

    async def _already_stored(
        self, thread_id: ThreadID, key: str
    ) -> tuple[Thread, HookEventID] | None:
        """The stored copy of a replayed event, if its first attempt did arrive."""
        found = await self.outbox.by_key(thread_id, key)
        thread = await self.threads.get(thread_id) if found is not None else None
        return (thread, found) if thread is not None and found is not None else None


def _loads(payload: str) -> dict[str, object]:
    data = json.loads(payload)
    return data if isinstance(data, dict) else {}
