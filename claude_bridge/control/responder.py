"""What a hook answers: the only way the bridge talks back to a live Claude Code session.

Per event, after it was stored (hooks/server calls us with the stored event's id; which events
are which: the traits in ``events/catalogue.py``):

* any ``stoppable`` event (the tool loop and Stop), while an operator's ``!claude stop`` is
  pending: ``{"continue": false, "stopReason": …}`` (consumed by exactly one answer);
* ``mid_turn`` events (PreToolUse, PostToolUse, PostToolUseFailure, UserPromptSubmit): queued
  messages as ``hookSpecificOutput.additionalContext``;
* Stop: queued messages as ``{"decision": "block", "reason": …}`` so Claude carries on with
  them, at most ``stop_block_limit`` times in a row (Claude Code ignores blocks past its cap);
  in listen mode, with nothing queued, the answer is held until a message arrives;
* PermissionRequest: held until an operator decides (``Approvals``).

Spooled replays (nobody reads their answer) and events whose token does not own the session get
``{}``: messages are never handed to a process that is not that session. A failure here answers
``{}`` as well — a 5xx would make the shim spool and replay an event that was stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from claude_bridge import host_files
from claude_bridge.config.sections.control import ControlConfig
from claude_bridge.control import framing
from claude_bridge.control.approvals import Approvals
from claude_bridge.control.file_carrier import Carrier, FileCarrier, with_files
from claude_bridge.control.messages import MessageQueue, compose
from claude_bridge.control.signals import Signals, thread_key
from claude_bridge.events.catalogue import STOP, kind_of
from claude_bridge.events.models import HookEvent, PermissionRequest
from claude_bridge.hooks.call import HookCall
from claude_bridge.hooks.held import HeldConnections
from claude_bridge.hooks.receipt import take_back_all
from claude_bridge.log import get_logger
from claude_bridge.store import Thread
from claude_bridge.store.database import now_ms
from claude_bridge.store.session_messages import SessionMessage
from claude_bridge.store.thread_control import ThreadControlStore

log = get_logger("responder")


class Responder:
    def __init__(
        self,
        options: ControlConfig,
        controls: ThreadControlStore,
        queue: MessageQueue,
        approvals: Approvals,
        signals: Signals,
        *,
        on_delivered: Callable[[], None],
    ) -> None:
        self.options = options
        self.controls = controls
        self.queue = queue
        self.approvals = approvals
        self.signals = signals
        self.on_delivered = on_delivered
        self.offer_requests: Callable[[str], list[dict[str, Any]]] = lambda _: []
        """``!claude file`` requests of a thread for its host (``control/file_requests``)."""
        # thread → (busy, monotonic time of its last hook event): for the background waiter.
        self._activity: dict[str, tuple[bool, float]] = {}
        self._held_stops: set[str] = set()
        # The hook server's count of held connections (``Control.add_routes`` shares it).
        self.connections = HeldConnections()

    async def __call__(self, event: HookEvent, thread: Thread, call: HookCall) -> dict[str, Any]:
        try:
            answer = await self._respond(event, thread, call)
        except Exception:
            log.exception("composing a hook answer failed; answering {}", thread_id=thread.id)
            answer = {}
            # What it had claimed is in no answer now: back to the queue at once.
            untaken, call.untaken[:] = list(call.untaken), []
            await take_back_all(untaken)
        if call.files_root and not call.replayed and call.token_name == thread.token_name:
            # A command path: it can read files of the project for ``!claude file``.
            if offered := self.offer_requests(thread.id):
                answer = {**answer, host_files.REQUESTS_KEY: offered}
        return answer

    def idle(self, thread_id: str) -> bool:
        """Whether the background waiter may deliver now (nobody else will any time soon)."""
        if thread_id in self._held_stops:
            return False
        busy, at = self._activity.get(thread_id, (False, 0.0))
        return not busy or time.monotonic() - at >= self.options.idle_after

    def interrupted(self, thread_id: str) -> None:
        """The turn was interrupted (a runner sent Escape): Claude Code fires no Stop for that,
        but the session is at its prompt now."""
        self._activity[thread_id] = (False, time.monotonic())

    async def _respond(self, event: HookEvent, thread: Thread, call: HookCall) -> dict[str, Any]:
        if call.replayed:
            return {}  # a spooled event from the past: its answer goes nowhere
        if call.token_name != thread.token_name:
            return {}  # an admin token's event for another's session: its messages are not for it
        name = event.hook_event_name
        kind = kind_of(name)
        await self.approvals.note_event(event, thread.id, int(call.hook_event_id))
        if kind.shows_activity:
            self._activity[thread.id] = (not kind.idle_after, time.monotonic())
        if kind.stoppable and (stop := await self._stop_answer(thread, call)):
            return stop
        if kind.mid_turn:
            messages, carrier = await self._take(thread, name, call)
            if not messages:
                return {}
            answer: dict[str, Any] = {
                "hookSpecificOutput": {
                    "hookEventName": name,
                    "additionalContext": compose(messages, self.options.message_budget),
                }
            }
            return with_files(answer, FileCarrier.to_fetch(messages, carrier))
        if kind is STOP:
            return await self._stop(event, thread, call)
        if isinstance(event, PermissionRequest):
            return await self.approvals.hold(event, thread.id, call)
        return {}

    async def _stop_answer(self, thread: Thread, call: HookCall) -> dict[str, Any] | None:
        if not self.controls.may_have_stop(thread.id):
            return None  # known without a query: the common case on the hook path
        control = await self.controls.get(thread.id)
        if not control.stop_requested or not call.connected():
            return None
        by = await self.controls.take_stop(thread.id)
        if by is None:
            return None  # another hook of this session carried it
        log.info("telling Claude Code to stop", thread_id=thread.id, by=by)
        return {"continue": False, "stopReason": f"Stopped from Matrix by {framing.name(by)}"}

    async def _take(
        self, thread: Thread, via: str, call: HookCall
    ) -> tuple[list[SessionMessage], Carrier]:
        carrier = self.queue.files.carrier(thread.session_id, call.files_root, call.local)
        messages = await self.queue.take(
            thread.id,
            via=via,
            hook_event_id=int(call.hook_event_id),
            connected=call.connected,
            carrier=carrier,
        )
        if messages:
            log.info("messages delivered", thread_id=thread.id, via=via, count=len(messages))
            call.untaken.append(self.take_back(thread.id, via, messages))
            self.on_delivered()
        return messages, carrier

    def take_back(
        self, thread_id: str, via: str, messages: list[SessionMessage]
    ) -> Callable[[], Awaitable[None]]:
        """What puts ``messages`` back in the queue should their answer never arrive."""

        async def take_back() -> None:
            back = await self.queue.give_back(thread_id, via, messages)
            log.warning(
                "messages queued again: the answer carrying them never reached the session",
                thread_id=thread_id,
                via=via,
                count=back,
            )
            self.signals.fire(thread_key(thread_id))  # a waiting answer may carry them now

        return take_back

    async def _stop(self, event: HookEvent, thread: Thread, call: HookCall) -> dict[str, Any]:
        control = await self.controls.get(thread.id)
        active = bool(getattr(event, "stop_hook_active", False))
        blocks = control.stop_blocks if active else 0
        if blocks >= self.options.stop_block_limit:
            # Claude Code would ignore this block; leave the messages for the next chance.
            await self.controls.set_stop_blocks(thread.id, 0)
            return {}
        messages, carrier = await self._take(thread, STOP.name, call)
        if not messages and control.listening(now_ms()):
            held = await self._listen(thread, call)
            if held is not None:
                return held
            messages, carrier = await self._take(thread, STOP.name, call)
        if not messages:
            if control.stop_blocks:
                await self.controls.set_stop_blocks(thread.id, 0)
            return {}
        await self.controls.set_stop_blocks(thread.id, blocks + 1)
        self._activity[thread.id] = (True, time.monotonic())
        answer = {"decision": "block", "reason": compose(messages, self.options.message_budget)}
        return with_files(answer, FileCarrier.to_fetch(messages, carrier))

    async def _listen(self, thread: Thread, call: HookCall) -> dict[str, Any] | None:
        """Hold the Stop answer until a message (or a stop request) arrives, or listening ends.

        Returns a stop answer, or None to look at the queue again.
        """
        if not self.connections.try_take():
            log.warning("not holding a Stop hook: every held-connection slot is taken",
                        thread_id=thread.id, cap=self.connections.cap)  # fmt: skip
            return None
        loop = asyncio.get_running_loop()
        hold_until = loop.time() + self.options.max_hold
        self._held_stops.add(thread.id)
        try:
            with self.signals.listen(thread_key(thread.id)) as wake:
                while not self.signals.closed:
                    control = await self.controls.get(thread.id)
                    if control.stop_requested:
                        return await self._stop_answer(thread, call)
                    if await self.queue.inbox.count_queued(thread.id):
                        return None
                    now = now_ms()
                    if not control.listen_until or control.listen_until <= now:
                        return None
                    until = min(hold_until, loop.time() + (control.listen_until - now) / 1000)
                    if not await self.signals.wait(wake, until, call.connected):
                        return None
                return None
        finally:
            self._held_stops.discard(thread.id)
            self.connections.give_back()
