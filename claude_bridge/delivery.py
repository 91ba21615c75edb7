"""The outbox worker: persisted hook events → Matrix, in order per thread, never twice.

One task per thread with pending events (so a slow thread never holds up another), a global cap on
concurrent sends, and for each hook event:

1. render it to Matrix messages (pure, deterministic for the same event),
2. send each message not yet recorded with the transaction id ``cb.<hook event id>.<part>`` — a retry
   after a lost answer reuses it, and Synapse answers with the event it already has; since Synapse
   forgets those ids when it restarts, a send that may have got through unanswered is first
   looked up in the room (``matrix/txn_lookup.py``),
3. record each event id as it is sent, and mark the hook event sent after the last part.

Temporary failures (homeserver down, 5xx, 429, timeouts) are retried with backoff, honouring
``retry_after_ms``; a permanent rejection of a part is replaced by a visible notice. Outages
(homeserver or database away) are reported through ``on_failure``; whoever watches for their end
calls ``resume()``, which cuts every retry's backoff short (``matrix/recovery.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from structlog.contextvars import bind_contextvars

from claude_bridge import coalesce
from claude_bridge.hooks.models import (
    HookEvent,
    HookInputError,
    MessageDisplay,
    Stop,
    SubagentStop,
    parse_hook_event,
)
from claude_bridge.ids import ThreadID
from claude_bridge.log import get_logger
from claude_bridge.matrix.client import MatrixClient, MatrixError
from claude_bridge.matrix.relations import edit_content
from claude_bridge.matrix.txn_lookup import find_sent
from claude_bridge.ops import metrics
from claude_bridge.render.messages import OutboundMessage, RenderContext
from claude_bridge.render.options import mirror_options
from claude_bridge.router import ThreadRouter
from claude_bridge.slots import SendSlots
from claude_bridge.store import Outbox, PendingEvent, Thread, ThreadStore

log = get_logger("delivery")

Renderer = Callable[[HookEvent, RenderContext], list[OutboundMessage]]
Rendered = tuple[HookEvent, list[OutboundMessage]]

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
        self.coalesce_lines = mirror_options(mirror).coalesce_lines
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
                        break
                    # One read of the thread per batch; what delivery changes it keeps in step.
                    thread = await self.threads.get(thread_id)
                    i = 0
                    while i < len(batch) and not self._stopping:
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
        """Deliver ``batch[i]``, or a run of events from there as one merged message; returns
        how many events of the batch were dealt with."""
        event = batch[i]
        rendered: Rendered | None = None
        if i + 1 < len(batch) and self.coalesce_lines > 1 and thread is not None:
            group, rendered = await self._group(batch, i, thread)
            if group and await self._send_merged(group, thread):
                for member, member_rendered, has_line in group:
                    if has_line and len(member_rendered[1]) == 1:
                        continue  # nothing but its line: marked sent with the merged message
                    await self._deliver_with_retry(
                        member, None, thread, member_rendered, {0} if has_line else set()
                    )
                return len(group)
        nxt = batch[i + 1] if i + 1 < len(batch) else None
        await self._deliver_with_retry(event, nxt, thread, rendered)
        return 1

    async def _group(
        self, batch: list[PendingEvent], i: int, thread: Thread
    ) -> tuple[list[tuple[PendingEvent, Rendered, bool]], Rendered | None]:
        """The run of queued events from ``batch[i]`` whose messages are a one-line notice
        (at most) followed by thread replies; returned when it holds two lines or more, with
        the first event's rendering either way (so it is not rendered twice)."""
        group: list[tuple[PendingEvent, Rendered, bool]] = []
        first: Rendered | None = None
        lines: list[coalesce.Line] = []
        sender: str | None = None
        budget = mirror_options(self.mirror).max_content_bytes // 4
        for event in batch[i:]:
            if self._may_be_sent(event) or thread.status == "archived":
                break  # its parts may be in the room already: it goes alone, looked up first
            try:
                hook = parse_hook_event(json.loads(event.payload))
            except (ValueError, HookInputError):
                break
            if isinstance(hook, MessageDisplay):
                break  # streamed text has its own coalescing (_superseded) and is not a notice
            messages = self.render(hook, await self._context(thread, hook, event))
            await asyncio.sleep(0)  # rendering a run is CPU only: let hook requests in between
            if first is None:
                first = (hook, messages)
            head = messages[0] if messages and coalesce.mergeable(messages[0]) else None
            rest = messages[1:] if head is not None else messages
            if not all(coalesce.follows_group(m) for m in rest):
                break
            if head is not None:
                line = coalesce.line_of(event.id, 0, head)
                if lines and (
                    head.sender != sender
                    or len(lines) >= self.coalesce_lines
                    or coalesce.size([*lines, line]) > budget
                ):
                    break
                lines.append(line)
                sender = head.sender
            group.append((event, (hook, messages), head is not None))
        while group and not group[-1][2]:
            group.pop()  # events after the last line gain nothing from riding along
        return (group if len(lines) >= 2 else []), first

    async def _send_merged(
        self, group: list[tuple[PendingEvent, Rendered, bool]], thread: Thread
    ) -> bool:
        """Send the group's lines as one message and record it as each line's part 0. False
        when that failed: the events then go one by one, each looked up first (uncertain)."""
        lines = [
            coalesce.line_of(event.id, 0, rendered[1][0])
            for event, rendered, has_line in group
            if has_line
        ]
        head = group[0][1][1][0]
        try:
            room_id = await self.router.ensure_room(thread)
            bind_contextvars(session_id=thread.session_id, room_id=room_id)
            sender = await self._sender(thread, head)
            txn_id = f"cb.{lines[0].hook_event}.0.m{len(lines)}"
            async with self._sends.slot():
                event_id = await self.client.send_event(
                    sender, room_id, "m.room.message", coalesce.merged_content(lines), txn_id
                )
            complete = [e.id for e, (_, msgs), has_line in group if has_line and len(msgs) == 1]
            await self.outbox.record_lines(thread.id, event_id, lines, complete)
        except Exception as e:
            log.warning("merged send failed, sending one by one", error=repr(e))
            self._uncertain.update(event.id for event, _, _ in group)
            return False
        metrics.COALESCED_LINES.inc(len(lines))
        self._settled.add(thread.id)
        self.last_success_ms = group[-1][0].received_at
        self.on_sent()
        return True

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
        if rendered is None:
            try:
                hook = parse_hook_event(json.loads(event.payload))
            except (ValueError, HookInputError) as e:
                await self.outbox.mark_failed(event.id, f"stored payload unreadable: {e}")
                return
            if self._superseded(hook, nxt):
                await self.outbox.mark_sent(event.id)
                return
        room_id = await self.router.ensure_room(thread)
        bind_contextvars(session_id=thread.session_id, room_id=room_id)
        if rendered is None:
            messages = self.render(hook, await self._context(thread, hook, event))
        else:
            messages = rendered[1]
        # Parts can only exist if an earlier attempt got that far: skip the read otherwise.
        sent = set(done or ())
        if self._may_be_sent(event):
            sent.update(await self.outbox.sent_parts(event.id))
        for part, message in enumerate(messages):
            if part in sent:
                continue
            event_id, anchor = await self._send_part(thread, room_id, event, part, message)
            await self.outbox.record_part(event.id, part, thread.id, anchor, event_id)
            await self._after_part(thread, message)
        await self.outbox.mark_sent(event.id)
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
        if nxt.event_name != "MessageDisplay":
            return False
        try:
            following = json.loads(nxt.payload)
        except ValueError:
            return False
        return bool(following.get("message_id") == hook.message_id)

    async def _context(self, thread: Thread, hook: HookEvent, event: PendingEvent) -> RenderContext:
        extra: dict[str, Any] = {
            "hook_event_id": event.id,
            "session_id": thread.session_id,
            "cwd": thread.project_path,
            "title": thread.title,
        }
        if isinstance(hook, MessageDisplay):
            streams = await self._streams(thread.id, event.id)
            extra["stream_text"] = streams.get(hook.message_id or "", (None, ""))[1]
        elif isinstance(hook, Stop) and not isinstance(hook, SubagentStop) and hook.prompt_id:
            # The turn's text may already be on screen as a streamed message: the renderer then
            # edits or skips instead of posting the reply a second time.
            turn = [
                (mid, text)
                for mid, (prompt, text) in (await self._streams(thread.id, event.id)).items()
                if prompt == hook.prompt_id
            ]
            if turn:
                extra["stream_anchor"], extra["stream_text"] = f"stream:{turn[-1][0]}", turn[-1][1]
        return RenderContext(
            thread_id=thread.id,
            project=thread.project_name or "Claude Code",
            operators=tuple(self.router.permissions.invitees()),
            mirror=self.mirror,
            extra=extra,
        )

    async def _streams(self, thread_id: str, up_to: int) -> dict[str, tuple[str | None, str]]:
        """MessageDisplay streams so far: message id → (prompt id, text), oldest first."""
        chunks: dict[str, dict[int, str]] = {}
        prompts: dict[str, str | None] = {}
        for payload in await self.outbox.payloads(thread_id, "MessageDisplay", up_to):
            data = json.loads(payload)
            mid, delta = data.get("message_id"), data.get("delta")
            if not isinstance(mid, str) or not isinstance(delta, str):
                continue
            prompts.setdefault(mid, data.get("prompt_id"))
            chunks.setdefault(mid, {}).setdefault(int(data.get("index") or 0), delta)
        return {
            mid: (prompts[mid], "".join(parts[i] for i in sorted(parts)))
            for mid, parts in chunks.items()
        }

    async def _send_part(
        self, thread: Thread, room_id: str, event: PendingEvent, part: int, message: OutboundMessage
    ) -> tuple[str, str | None]:
        """Send one message; returns its event id and the anchor to record it under."""
        sender = await self._sender(thread, message)
        content = dict(message.content)
        async with self._sends.slot():
            if message.attachment is not None:
                att = message.attachment
                content["url"] = await self.client.upload(
                    sender, att.data, att.filename, att.mimetype
                )
            if message.state_key is not None:
                state_id = await self.client.send_state(
                    sender, room_id, message.event_type, message.state_key, content
                )
                return state_id, message.anchor
            content, anchor = await self._relate(thread.id, message, content)
            txn_id = f"cb.{event.id}.{part}"
            if self._may_be_sent(event):
                found = await find_sent(
                    self.client,
                    sender,
                    room_id,
                    message.event_type,
                    txn_id,
                    or_prefix=f"{txn_id}.m",  # a merged message this line began
                )
                if found:
                    log.info("already in the room, not sent again", hook_event=event.id, part=part)
                    lines = coalesce.lines_from_content(found.get("content") or {})
                    if lines:
                        await self.outbox.record_lines(thread.id, found["event_id"], lines)
                        self._uncertain.update(line.hook_event for line in lines)
                    return str(found["event_id"]), anchor
            try:
                sent = await self.client.send_event(
                    sender, room_id, message.event_type, content, txn_id
                )
                return sent, anchor
            except MatrixError as e:
                if e.temporary:
                    raise
                log.error(
                    "homeserver rejected a message", hook_event=event.id, part=part, error=str(e)
                )
                notice = {
                    "msgtype": "m.notice",
                    "body": f"⚠️ could not mirror part of {event.event_name}: {e.errcode or e.status}",
                    "m.mentions": {},
                }
                fallback = await self.client.send_event(
                    sender, room_id, "m.room.message", notice, f"{txn_id}.fallback"
                )
                return fallback, message.anchor

    async def _relate(
        self, thread_id: str, message: OutboundMessage, content: dict[str, Any]
    ) -> tuple[dict[str, Any], str | None]:
        """Resolve anchors into relations; also say which anchor the sent event should carry.

        An edit whose original is unknown (its first send was rejected) is sent as a new message
        and takes the original's anchor, so later edits edit it instead of each posting anew.
        """
        anchor = message.anchor
        if message.replaces:
            original, lines = await self.outbox.anchor_target(thread_id, message.replaces)
            if original and lines:
                # One line of a merged message: the edit shows all of them, that one changed.
                # Stored first, so a retry or a later edit of another line builds on it.
                lines = coalesce.replace_line(lines, message.replaces, message)
                await self.outbox.set_lines(original, lines)
                return edit_content(original, coalesce.merged_content(lines)), anchor
            if original:
                return edit_content(original, content), anchor
            anchor = anchor or message.replaces
        if message.thread_root:
            root, lines = await self.outbox.anchor_target(thread_id, message.thread_root)
            if lines:
                line = next((x for x in lines if x.anchor == message.thread_root), None)
                if line is not None:
                    content = coalesce.in_reply_to_line(content, line)
            if root:
                content["m.relates_to"] = {
                    "rel_type": "m.thread",
                    "event_id": root,
                    "is_falling_back": True,
                    "m.in_reply_to": {"event_id": root},
                }
        return content, anchor

    async def _sender(self, thread: Thread, message: OutboundMessage) -> str:
        """The ghost that speaks ``message``: the thread's, or a subagent's (joined first)."""
        if not message.sender:
            return thread.ghost_mxid
        sender = self.router.ghost_mxid(thread.id, message.sender)
        await self.router.ensure_member(
            thread, sender, message.sender_displayname or self.router.displayname(thread)
        )
        return sender

    async def _after_part(self, thread: Thread, message: OutboundMessage) -> None:
        """Keep the thread row in step with what the room now shows."""
        if message.event_type == "m.room.name" and message.state_key == "":
            thread.title = str(message.content.get("name", ""))
            await self.threads.set_title(thread.id, thread.title)
        elif message.event_type == "org.claude_bridge.thread" and message.state_key == "":
            status = message.content.get("status")
            if isinstance(status, str):
                thread.status = status
                await self.threads.set_status(thread.id, status)
