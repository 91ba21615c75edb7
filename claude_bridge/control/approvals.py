"""Approvals: a PermissionRequest hook held open until an operator decides in Matrix.

The request message is posted through the outbox like every other event (the renderer anchors it
``perm:<hook event id>``); reactions and replies find the approval through ``sent_event``, which
maps any Matrix event delivery sent back to its hook event. The first valid decision wins (a
conditional UPDATE); the hold ends as soon as the row leaves ``pending`` — decided here, timed
out, the client gone (the terminal answered, or Claude Code gave up), the session visibly moved
on, or the bridge stopping — and ``Receipts`` then edits the request message to say how it ended.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from claude_bridge.control import decisions
from claude_bridge.control.attached_reads import AttachedReads
from claude_bridge.control.signals import Signals, approval_key
from claude_bridge.events.catalogue import Settles, kind_of
from claude_bridge.events.models import HookEvent, PermissionRequest
from claude_bridge.hooks.call import HookCall
from claude_bridge.log import get_logger
from claude_bridge.store.approvals import PENDING, Approval, ApprovalStore
from claude_bridge.store.database import now_ms

log = get_logger("approvals")


def agent_of(event: HookEvent) -> str:
    value = getattr(event, "agent_id", None) or event.extra.get("agent_id")
    return value if isinstance(value, str) else ""


class Approvals:
    def __init__(
        self,
        store: ApprovalStore,
        signals: Signals,
        *,
        timeout: float,
        on_settled: Callable[[], None],
        attached: AttachedReads | None = None,
    ) -> None:
        self.store = store
        self.signals = signals
        self.timeout = timeout
        self.on_settled = on_settled
        self.attached = attached
        # Threads with a held request: the hot path skips the database for all others.
        self._held: Counter[str] = Counter()

    async def hold(
        self, event: PermissionRequest, thread_id: str, call: HookCall
    ) -> dict[str, Any]:
        """Wait for a decision; answer with it, or with ``{}`` so Claude Code asks itself."""
        hook_id = int(call.hook_event_id)
        if self.attached and (who := await self.attached.attacher(event, thread_id)):
            allowed = await self.attached.allow(
                event, thread_id, hook_id, agent_id=agent_of(event), who=who
            )
            self.on_settled()
            return decisions.answer(allowed)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        self._held[thread_id] += 1
        try:
            with self.signals.listen(approval_key(hook_id)) as wake:
                approval = await self.store.create(
                    hook_id,
                    thread_id,
                    agent_id=agent_of(event),
                    call_key=decisions.call_key(agent_of(event), event.tool_name, event.tool_input),
                    tool_name=event.tool_name,
                    request=decisions.request_of(event),
                    expires_at=now_ms() + int(self.timeout * 1000),
                )
                log.info("holding a permission request", hook_event=hook_id, tool=event.tool_name)
                while approval.state == PENDING and not self.signals.closed:
                    if await self.signals.wait(wake, deadline, call.connected):
                        approval = await self._reread(hook_id)
                        continue
                    break
                if approval.state == PENDING:
                    approval = await self._end_unanswered(hook_id, call)
        finally:
            self._held[thread_id] -= 1
            if self._held[thread_id] <= 0:
                del self._held[thread_id]
        self.on_settled()
        log.info("permission request settled", hook_event=hook_id, state=approval.state)
        return decisions.answer(approval) if call.connected() else {}

    async def _end_unanswered(self, hook_id: int, call: HookCall) -> Approval:
        if self.signals.closed:
            state, reason = "answered_elsewhere", "the bridge stopped before a decision"
        elif not call.connected():
            state, reason = "answered_elsewhere", "answered in the terminal"
        else:
            state, reason = "timed_out", None
        # If a decision landed in the meantime, it won: the conditional UPDATE does nothing.
        await self.store.decide(hook_id, state, reason=reason)
        return await self._reread(hook_id)

    async def _reread(self, hook_id: int) -> Approval:
        found = await self.store.get(hook_id)
        assert found is not None
        return found

    async def decide(
        self, approval: Approval, state: str, by: str, *, reason: str | None, event_id: str
    ) -> bool:
        """Record an operator's decision; False when another decision or ending came first."""
        won = await self.store.decide(
            approval.hook_event_id, state, by=by, reason=reason, decision_event=event_id
        )
        if won:
            self.signals.fire(approval_key(approval.hook_event_id))
            self.on_settled()
        return won

    async def note_event(self, event: HookEvent, thread_id: str, hook_event_id: int) -> None:
        """Another hook event of the session: a held request it shows answered is settled (the
        event kind's ``settles_approvals`` says which)."""
        if thread_id not in self._held:
            return
        settles = kind_of(event.hook_event_name).settles_approvals
        if settles is Settles.SESSION:
            settled = await self.store.settle_moved_on(
                thread_id, hook_event_id, "the session ended"
            )
        elif settles is Settles.TURN:
            settled = await self.store.settle_moved_on(
                thread_id, hook_event_id, "answered in the terminal", agent_id=agent_of(event)
            )
        elif settles is Settles.SUBAGENT:
            settled = await self.store.settle_moved_on(
                thread_id, hook_event_id, "the subagent finished", agent_id=agent_of(event)
            )
        elif settles is Settles.CALL:
            tool = getattr(event, "tool_name", None) or event.extra.get("tool_name") or ""
            tool_input = getattr(event, "tool_input", None) or event.extra.get("tool_input") or {}
            key = decisions.call_key(agent_of(event), str(tool), tool_input)
            settled = await self.store.settle_moved_on(
                thread_id, hook_event_id, "answered in the terminal", call_key=key
            )
        else:
            return
        for hook_id in settled:
            self.signals.fire(approval_key(hook_id))
