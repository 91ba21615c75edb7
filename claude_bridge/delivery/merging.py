"""Delivering a queued run of events as merged messages (what may merge: ``coalesce.py``).

The run's tool-call lines go out as one message, recorded as each line's part in one transaction;
then each event's other parts (its output, in the merged message's thread) follow in order, where
consecutive small outputs share one reply. Any failure drops back to sending one by one: the
events are then uncertain, so each part is looked up in the room before it is sent, and a merged
message that did get through is found and recorded, never sent again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from claude_bridge import coalesce, metrics
from claude_bridge.delivery.context import ContextReader
from claude_bridge.delivery.sending import Sender, thread_relation
from claude_bridge.events.models import HookEvent, MessageDisplay
from claude_bridge.events.parse import HookInputError, parse_hook_event
from claude_bridge.log import get_logger
from claude_bridge.render.messages import OutboundMessage, RenderContext
from claude_bridge.store import PendingEvent, Thread

log = get_logger("delivery")

Renderer = Callable[[HookEvent, RenderContext], list[OutboundMessage]]
Rendered = tuple[HookEvent, list[OutboundMessage]]
DeliverOne = Callable[[PendingEvent, Rendered, set[int]], Awaitable[None]]


@dataclass(frozen=True)
class Member:
    event: PendingEvent
    rendered: Rendered
    line: coalesce.Line | None

    @property
    def replies(self) -> list[tuple[int, OutboundMessage]]:
        """(part, message) of everything but the line."""
        start = 0 if self.line is None else 1
        return list(enumerate(self.rendered[1]))[start:]

    @property
    def sent_with_lines(self) -> set[int]:
        """Its parts the merged message already holds."""
        return set() if self.line is None else {0}


class Merger:
    def __init__(
        self,
        render: Renderer,
        contexts: ContextReader,
        sender: Sender,
        *,
        max_lines: int,
        max_content_bytes: int,
    ) -> None:
        self.render = render
        self.contexts = contexts
        self.sender = sender
        self.max_lines = max_lines
        # An edit of a merged message carries it twice; a merged reply has room to itself.
        self.lines_budget = max_content_bytes // 4
        self.replies_budget = max_content_bytes // 2

    async def plan(
        self, batch: list[PendingEvent], thread: Thread
    ) -> tuple[list[Member], Rendered | None]:
        """The run of queued events from ``batch[0]`` whose messages are a one-line notice (at
        most) followed by thread replies, when it holds two lines or more; also the first
        event's rendering either way, so it is not rendered twice."""
        run: list[Member] = []
        first: Rendered | None = None
        lines: list[coalesce.Line] = []
        ghost: str | None = None
        for event in batch:
            if self.sender.may_be_sent(event) or thread.status == "archived":
                break  # its parts may be in the room already: it goes alone, looked up first
            if event.folded is not None:
                break  # a folded backlog's notice goes alone
            try:
                hook = parse_hook_event(json.loads(event.payload))
            except (ValueError, HookInputError):
                break
            if isinstance(hook, MessageDisplay):
                break  # streamed text has its own coalescing and is not a notice
            messages = self.render(hook, await self.contexts.context(thread, hook, event))
            await asyncio.sleep(0)  # rendering a run is CPU only: let hook requests in between
            first = first or (hook, messages)
            head = messages[0] if messages and coalesce.mergeable(messages[0]) else None
            rest = messages[1:] if head is not None else messages
            if not all(coalesce.follows_group(m) for m in rest):
                break
            line = None
            if head is not None:
                line = coalesce.line_of(event.id, 0, head)
                if lines and (
                    head.sender != ghost
                    or len(lines) >= self.max_lines
                    or coalesce.size([*lines, line]) > self.lines_budget
                ):
                    break
                lines.append(line)
                ghost = head.sender
            run.append(Member(event, (hook, messages), line))
        while run and run[-1].line is None:
            run.pop()  # events after the last line gain nothing from riding along
        return (run if len(lines) >= 2 else []), first

    async def send_lines(self, run: list[Member], thread: Thread, room_id: str) -> str | None:
        """Send the run's lines as one message, recorded as each line's part 0 (events that are
        nothing but their line are then sent). ``None`` when that failed: the run is uncertain."""
        lines = [m.line for m in run if m.line is not None]
        head = next(m.rendered[1][0] for m in run if m.line is not None)
        try:
            txn_id = f"cb.{lines[0].hook_event}.0.m{len(lines)}"
            content = coalesce.merged_content(lines)
            event_id = await self._send(thread, head, room_id, content, txn_id)
            complete = [m.event.id for m in run if m.line is not None and not m.replies]
            await self.sender.sent.record_lines(thread.id, event_id, lines, complete)
        except Exception as e:
            log.warning("merged send failed, sending one by one", error=repr(e))
            self.sender.uncertain.update(m.event.id for m in run)
            return None
        metrics.COALESCED_LINES.inc(len(lines))
        return event_id

    async def send_rest(
        self, run: list[Member], thread: Thread, room_id: str, root: str, one: DeliverOne
    ) -> None:
        """Everything but the lines, in order: small outputs under the merged message share
        one reply per stretch; other parts go one event at a time through ``one``."""
        lines = {m.line.anchor: m.line for m in run if m.line is not None and m.line.anchor}
        roots = set(lines)
        head = next(m.rendered[1][0] for m in run if m.line is not None)
        stretch: list[Member] = []
        replies: list[coalesce.Reply] = []
        size = 0

        async def flush() -> None:
            nonlocal size
            if len(replies) < 2 or not await self._send_replies(
                replies, thread, room_id, root, head
            ):
                for m in stretch:
                    await one(m.event, m.rendered, m.sent_with_lines)
            stretch.clear()
            replies.clear()
            size = 0

        for m in run:
            if not m.replies:
                continue  # nothing but its line: already sent
            if all(
                coalesce.mergeable_reply(msg, roots) and msg.sender == head.sender
                for _, msg in m.replies
            ):
                own = self._replies(m, lines)
                own_size = sum(r.size for r in own)
                if stretch and size + own_size > self.replies_budget:
                    await flush()
                stretch.append(m)
                replies.extend(own)
                size += own_size
                continue
            await flush()
            await one(m.event, m.rendered, m.sent_with_lines)
        await flush()

    @staticmethod
    def _replies(m: Member, lines: dict[str, coalesce.Line]) -> list[coalesce.Reply]:
        return [
            coalesce.Reply(m.event.id, part, dict(msg.content), lines[str(msg.thread_root)])
            for part, msg in m.replies
        ]

    async def _send_replies(
        self,
        replies: list[coalesce.Reply],
        thread: Thread,
        room_id: str,
        root: str,
        head: OutboundMessage,
    ) -> bool:
        content = coalesce.merged_replies(replies)
        content["m.relates_to"] = thread_relation(root)
        first = replies[0]
        events = sorted({r.hook_event for r in replies})
        try:
            txn_id = f"cb.{first.hook_event}.{first.part}.m{len(replies)}"
            event_id = await self._send(thread, head, room_id, content, txn_id)
            parts = [(r.hook_event, r.part) for r in replies]
            await self.sender.sent.record_parts(thread.id, event_id, parts, events)
        except Exception as e:
            log.warning("merged reply failed, sending one by one", error=repr(e))
            self.sender.uncertain.update(events)
            return False
        return True

    async def _send(
        self,
        thread: Thread,
        head: OutboundMessage,
        room_id: str,
        content: dict[str, Any],
        txn_id: str,
    ) -> str:
        """Send a merged message as ``head``'s ghost. Its transaction id is that of the first
        part it holds plus ``.m<count>``: ``Sender.find`` recognises it by that prefix."""
        ghost = await self.sender.ghost(thread, head)
        async with self.sender.slots.slot(thread.id):
            return await self.sender.client.send_event(
                ghost, room_id, "m.room.message", content, txn_id
            )
