"""The per-thread delivery worker: fetch, deliver in order, retry; see the package docstring."""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from collections.abc import Callable
from typing import Any

from structlog.contextvars import bind_contextvars

from claude_bridge import metrics
from claude_bridge.config.sections.mirror import mirror_options
from claude_bridge.delivery.backlog import BacklogCap
from claude_bridge.delivery.context import ContextReader
from claude_bridge.delivery.denials import Denials
from claude_bridge.delivery.merging import Merger, Rendered, Renderer
from claude_bridge.delivery.sending import Sender
from claude_bridge.events.catalogue import MESSAGE_DISPLAY
from claude_bridge.events.models import HookEvent, MessageDisplay
from claude_bridge.events.parse import HookInputError, parse_hook_event
from claude_bridge.ids import ThreadID
from claude_bridge.log import get_logger
from claude_bridge.matrix.client import MatrixClient, MatrixError
from claude_bridge.room_state import starting_activity
from claude_bridge.router import ThreadRouter
from claude_bridge.slots import SendSlots
from claude_bridge.store import HookEventLog, Outbox, PendingEvent, SentEvents, Thread, ThreadStore

log = get_logger("delivery")

BATCH = 100
BACKOFF_START = 0.25
BACKOFF_MAX = 30.0
PERMANENT_TRIES = 5


class Delivery:
    def __init__(
        self,
        outbox: Outbox,
        threads: ThreadStore,
        router: ThreadRouter,
        client: MatrixClient,
        render: Renderer,
        *,
        mirror: Any = None,
        max_parallel: int = 16,
        on_sent: Callable[[], None] | None = None,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.outbox = outbox
        self.threads = threads
        self.router = router
        self.client = client
        self.render = render
        self.mirror = mirror
        self.on_sent = on_sent or (lambda: None)
        self.on_failure = on_failure or (lambda: None)
        # Replaced by resume(): the retries sleeping on the old one wake up.
        self._resumed = asyncio.Event()
        # Hook events whose last attempt may have reached the homeserver unanswered, and the
        # threads this process has delivered to (before that, the previous process may have died
        # mid-send): their sends are looked up in the room before being sent (txn_lookup).
        self._uncertain: set[int] = set()
        self._settled: set[ThreadID] = set()
        self._sends = SendSlots(max_parallel)  # a hung send gives its slot back (slots.py)
        self.sent = SentEvents(outbox.db)
        log = HookEventLog(outbox.db)
        self.contexts = ContextReader(log, router, mirror)
        self.sender = Sender(
            client, self.sent, threads, router, self._sends, self._may_be_sent, self._uncertain
        )
        options = mirror_options(mirror)
        self.merger = Merger(
            render,
            self.contexts,
            self.sender,
            max_lines=options.coalesce_lines,
            max_content_bytes=options.max_content_bytes,
        )
        self.backlog = BacklogCap(outbox, options.backlog_events)
        # Held while a thread's worker delivers an event, and by anything else that edits the
        # thread's messages (a merged message's lines are read, changed and sent as one).
        self._locks: weakref.WeakValueDictionary[ThreadID, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self.denials = Denials(
            log, threads, self.contexts, self.sender, client, render, self.thread_lock
        )
        self._workers: dict[ThreadID, asyncio.Task[None]] = {}
        self._dirty: set[ThreadID] = set()
        self._stopping = False
        self.last_success_ms: int | None = None

    async def start(self) -> None:
        for thread_id in await self.outbox.threads_with_pending():
            self.notify(thread_id)

    def notify(self, thread_id: ThreadID) -> None:
        """New work for a thread: start its worker, or tell the running one to look again."""
        if self._stopping:
            return
        self._dirty.add(thread_id)
        if thread_id not in self._workers:
            task = asyncio.create_task(self._run(thread_id), name=f"delivery:{thread_id}")
            self._workers[thread_id] = task

    async def stop(self, timeout: float = 10.0) -> None:
        """Finish the events in flight, then stop; what is left stays in the outbox."""
        self._stopping = True
        self.resume()  # no worker should sit out a 30 s backoff before it notices
        workers = list(self._workers.values())
        if workers:
            _, pending = await asyncio.wait(workers, timeout=timeout)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def resume(self) -> None:
        """The outage is over: every retry waiting out its backoff tries again now."""
        self._resumed.set()
        self._resumed = asyncio.Event()

    async def _backoff(self, seconds: float) -> None:
        """Wait before retrying after an outage-like failure; ``resume()`` ends the wait early."""
        resumed = self._resumed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await resumed.wait()
                if not self._stopping:
                    log.info("backoff cut short: the outage is over", backoff_s=seconds)

    @property
    def active_threads(self) -> int:
        return len(self._workers)

    async def _run(self, thread_id: ThreadID) -> None:
        bind_contextvars(thread_id=thread_id)  # this task's log lines name their thread
        try:
            while thread_id in self._dirty and not self._stopping:
                self._dirty.discard(thread_id)
                while not self._stopping:
                    batch = await self._fetch(thread_id)
                    if not batch:
                        self.backlog.caught_up(thread_id)
                        break
                    batch = await self.backlog.check(thread_id, batch, BATCH)
                    # One read of the thread per batch; what delivery changes it keeps in step.
                    thread = await self.threads.get(thread_id)
                    i = 0
                    while i < len(batch) and not self._stopping:
                        async with self.thread_lock(thread_id):
                            i += await self._deliver_next(batch, i, thread)
        except Exception:
            log.exception(
                "delivery worker crashed; the thread's events stay queued", thread_id=thread_id
            )
        finally:
            self._workers.pop(thread_id, None)
            # Work that arrived while we were leaving must not wait for the next event.
            if thread_id in self._dirty and not self._stopping:
                self.notify(thread_id)

    def thread_lock(self, thread_id: ThreadID) -> asyncio.Lock:
        lock = self._locks.get(thread_id)
        if lock is None:
            lock = self._locks[thread_id] = asyncio.Lock()
        return lock

    async def _fetch(self, thread_id: ThreadID) -> list[PendingEvent]:
        delay = BACKOFF_START
        while True:
            try:
                return await self.outbox.pending(thread_id, BATCH)
            except Exception as e:  # the database is away: wait for it, lose nothing
                log.warning("outbox read failed, retrying", thread_id=thread_id, error=str(e))
                metrics.observe_retry("database")
                self.on_failure()
                await self._backoff(delay)
                delay = min(delay * 2, BACKOFF_MAX)

    async def _deliver_next(self, batch: list[PendingEvent], i: int, thread: Thread | None) -> int:
        """Deliver ``batch[i]``, or a run of queued events from there merged (``merging.py``);
        returns how many events of the batch were dealt with."""
        rendered: Rendered | None = None
        if i + 1 < len(batch) and self.merger.max_lines > 1 and thread is not None:
            run, rendered = await self.merger.plan(batch[i:], thread)
            if run:
                starting = starting_activity(run[0].rendered[0])
                room_id = await self.router.ensure_room(thread, starting)
                bind_contextvars(session_id=thread.session_id, room_id=room_id)
                root = await self.merger.send_lines(run, thread, room_id)
                if root is not None:
                    self._settled.add(thread.id)
                    self.last_success_ms = run[-1].event.received_at
                    self.on_sent()

                    async def one(event: PendingEvent, r: Rendered, done: set[int]) -> None:
                        await self._deliver_with_retry(event, None, thread, r, done)

                    await self.merger.send_rest(run, thread, room_id, root, one)
                    return len(run)
        nxt = batch[i + 1] if i + 1 < len(batch) else None
        await self._deliver_with_retry(batch[i], nxt, thread, rendered)
        return 1

    async def _deliver_with_retry(
        self,
        event: PendingEvent,
        nxt: PendingEvent | None,
        thread: Thread | None,
        rendered: Rendered | None = None,
        done: set[int] | None = None,
    ) -> None:
        delay = BACKOFF_START
        rejected = 0
        while not self._stopping:
            try:
                await self._deliver(event, nxt, thread, rendered, done or set())
                return
            except MatrixError as e:
                wait = max(delay, (e.retry_after_ms or 0) / 1000)
                if not e.temporary:
                    # Rejected outright (e.g. forbidden): a few tries in case it was a race,
                    # then set it aside so the rest of the thread is not held up for ever.
                    rejected += 1
                    if rejected >= PERMANENT_TRIES:
                        log.error(
                            "homeserver keeps rejecting an event, set aside",
                            hook_event=event.id,
                            error=str(e),
                        )
                        await self.outbox.mark_failed(event.id, str(e))
                        return
                log.warning(
                    "homeserver request failed, will retry",
                    hook_event=event.id,
                    thread_id=event.thread_id,
                    error=str(e),
                    retry_in=round(wait, 2),
                )
                metrics.observe_matrix_retry(e)
                with contextlib.suppress(Exception):
                    await self.outbox.record_attempt(event.id, str(e))
                if e.temporary and e.status != 429:
                    # Unreachable or failing: an outage, whose end may come before the backoff's.
                    self._uncertain.add(event.id)
                    self.on_failure()
                    await self._backoff(wait)
                else:  # rate-limited or rejected: the homeserver is there, keep to the wait
                    await asyncio.sleep(wait)
                delay = min(delay * 2, BACKOFF_MAX)
            except Exception as e:  # database away, or a bug: keep the event, try again
                log.warning("delivery step failed, will retry", hook_event=event.id, error=repr(e))
                self._uncertain.add(event.id)
                metrics.observe_retry("error")
                self.on_failure()
                await self._backoff(delay)
                delay = min(delay * 2, BACKOFF_MAX)

    async def _deliver(
        self,
        event: PendingEvent,
        nxt: PendingEvent | None,
        thread: Thread | None,
        rendered: Rendered | None = None,
        done: set[int] | None = None,
    ) -> None:
        """``rendered``: the event's rendering when coalescing already made it; ``done``: parts
        known to be sent (a merged message's line)."""
        if thread is None:  # cannot happen: the row is written with the event
            await self.outbox.mark_failed(event.id, "thread row missing")
            return
        if thread.status == "archived":
            # Archiving is final: its ghost left the room. Keep the event, say why it stays.
            await self.outbox.mark_failed(event.id, "thread archived: not mirrored")
            return
        hook: HookEvent | None = None
        if rendered is None and event.folded is None:
            try:
                hook = parse_hook_event(json.loads(event.payload))
            except (ValueError, HookInputError) as e:
                await self.outbox.mark_failed(event.id, f"stored payload unreadable: {e}")
                return
            if self._superseded(hook, nxt):
                await self.outbox.mark_sent(event.id)
                return
        first = hook if hook is not None else (rendered[0] if rendered is not None else None)
        room_id = await self.router.ensure_room(thread, starting_activity(first))
        bind_contextvars(session_id=thread.session_id, room_id=room_id)
        if event.folded is not None:  # the notice of a folded backlog, not the event it was
            messages = self.backlog.notice(event)
        elif hook is not None:
            messages = self.render(hook, await self.contexts.context(thread, hook, event))
        else:
            assert rendered is not None
            messages = rendered[1]
        # Parts can only exist if an earlier attempt got that far: skip the read otherwise.
        sent = set(done or ())
        if self._may_be_sent(event):
            sent.update(await self.sent.sent_parts(event.id))
        todo = [(part, message) for part, message in enumerate(messages) if part not in sent]
        for part, message in todo:
            event_id, anchor = await self.sender.send_part(thread, room_id, event, part, message)
            # The thread row follows the room first: a retry re-does that, never the send.
            await self.sender.after_part(thread, message)
            last = part == todo[-1][0]
            await self.sent.record_part(event.id, part, thread.id, anchor, event_id, last=last)
        if not todo:
            await self.outbox.mark_sent(event.id)
        if event.folded is not None:
            self.backlog.sent(event)
        self._uncertain.discard(event.id)
        self._settled.add(event.thread_id)
        self.last_success_ms = event.received_at
        self.on_sent()

    def _may_be_sent(self, event: PendingEvent) -> bool:
        """Could an earlier attempt at this event have reached the homeserver unanswered?"""
        return (
            event.attempts > 0
            or event.id in self._uncertain
            or event.thread_id not in self._settled
        )

    def _superseded(self, hook: HookEvent, nxt: PendingEvent | None) -> bool:
        """A streamed chunk whose successor is already queued need not be shown (coalescing).

        The first chunk of a stream is always sent: it creates the message later chunks edit.
        """
        if not isinstance(hook, MessageDisplay) or hook.index == 0 or hook.final or nxt is None:
            return False
        if nxt.event_name != MESSAGE_DISPLAY.name:
            return False
        try:
            following = json.loads(nxt.payload)
        except ValueError:
            return False
        return bool(following.get("message_id") == hook.message_id)
