"""Matrix events → steering: messages to Claude, approval decisions, commands, invites.

Registered with ``matrix/inbound``, which hands us every stored event in order (of the bridge's
own ghosts and bot only messages marked as hand-offs). Who sent it decides everything: no level —
ignored; a viewer — may read and ask ``help``/``status``, nothing they write reaches Claude; an
operator — messages, decisions, commands, and withdrawing or editing what is still queued; an
admin — also ``invite``. A hand-off counts only from the ghost of the thread it names
(``handoffs``); the mark on anyone else's message changes nothing. Who may be in a room at all
is ``room_guard``'s, which sees every event first.
"""

from __future__ import annotations

from typing import Any

from claude_bridge.config import PermissionLevel
from claude_bridge.control import decisions
from claude_bridge.control.commands import Caller, CommandError, CommandSet
from claude_bridge.control.handoffs import Handoffs
from claude_bridge.control.info_commands import InfoCommands
from claude_bridge.control.parts import Parts
from claude_bridge.control.roles import allows
from claude_bridge.control.room import RoomReplies
from claude_bridge.control.room_guard import RoomGuard
from claude_bridge.control.signals import thread_key
from claude_bridge.events.catalogue import SESSION_END
from claude_bridge.room_state import resume_command
from claude_bridge.store import Thread
from claude_bridge.store.approvals import PENDING, Approval
from claude_bridge.store.matrix_events import ReceivedEvent

FORWARDED_MSGTYPES = frozenset({"m.text", "m.emote"})
HINTS_KEPT = 10_000


def ended_note(thread: Thread) -> str:
    """The answer to a message written into an ended session's room."""
    where = f" (in `{thread.project_path}`)" if thread.project_path else ""
    return (
        "⏹️ This session has ended: Claude is not reading this room now. To go on, run "
        f"`{resume_command(thread.session_id)}` on the host{where}. Your message waits and "
        "reaches Claude when the session is back; redact it to withdraw it."
    )


def strip_reply_fallback(body: str) -> str:
    """Drop the ``> <@user> quoted`` lines clients put before a reply's own text."""
    lines = body.split("\n")
    while lines and lines[0].startswith(">"):
        lines.pop(0)
    return "\n".join(lines).strip()


class InboundHandler:
    def __init__(
        self,
        parts: Parts,
        commands: CommandSet,
        info: InfoCommands,
        replies: RoomReplies,
        guard: RoomGuard,
    ) -> None:
        self.p = parts
        self.commands = commands
        self.info = info
        self.replies = replies
        self.guard = guard
        self.handoffs = Handoffs(parts, replies)
        # Prompts whose unknown reaction was answered. In memory: a restart ends every held
        # request (``Control.start``), so none outlives it.
        self._hinted: set[int] = set()

    async def __call__(self, event: ReceivedEvent) -> None:
        # Membership, room settings and encryption are the guard's; an encrypted room's events
        # stop there too.
        if await self.guard.handle(event):
            return
        kind = event.event_type
        thread = await self.p.threads.get_by_room(event.room_id)
        if kind == "m.room.message":
            await self._message(event, thread)
        elif thread is not None and kind == "m.reaction":
            await self._reaction(event, thread)
        elif thread is not None and kind == "m.room.redaction":
            await self._redaction(event, thread)

    async def _redaction(self, event: ReceivedEvent, thread: Thread) -> None:
        """Withdraw a queued message: by its sender, or by an operator of the thread."""
        redacts = event.event.get("redacts") or event.event.get("content", {}).get("redacts")
        message = await self.p.inbox.get(redacts) if isinstance(redacts, str) else None
        if message is None or message.thread_id != thread.id:
            return
        if event.sender != message.sender:
            level = await self.p.roles.level(event.sender, thread.id)
            if not allows(level, PermissionLevel.OPERATOR):
                return
        if await self.p.inbox.withdraw(message.event_id, thread.id):
            await self.p.audit.record(thread.id, event.sender, "withdraw", message.event_id)

    async def _message(self, event: ReceivedEvent, thread: Thread | None) -> None:
        content: dict[str, Any] = event.event.get("content") or {}
        body = content.get("body")
        if not isinstance(body, str) or content.get("msgtype") == "m.notice":
            return
        if self.p.roles.is_bridge_user(event.sender):
            # Only a hand-off gets here from the bridge's own users, and only a genuine one
            # (its own thread's ghost, a plain new message) goes anywhere.
            source = await self.handoffs.source_of(event, thread) if thread else None
            if thread is not None and source is not None and body.strip():
                await self._queue(event, thread, body.strip(), source=source)
            return
        level = await self.p.roles.level(event.sender, thread.id if thread else None)
        if level is None:
            return
        relates = content.get("m.relates_to") or {}
        if relates.get("rel_type") == "m.replace":
            new = content.get("m.new_content") or {}
            if (
                thread
                and allows(level, PermissionLevel.OPERATOR)
                and isinstance(new.get("body"), str)
                and isinstance(relates.get("event_id"), str)
            ):
                edited = relates["event_id"]
                if await self.p.inbox.edit(edited, thread.id, event.sender, new["body"]):
                    await self.p.audit.record(thread.id, event.sender, "edit", edited)
            return
        reply_to = (relates.get("m.in_reply_to") or {}).get("event_id")
        text = strip_reply_fallback(body) if reply_to else body.strip()
        caller = Caller(event.sender, level, event.room_id, event.event_id, thread)
        try:
            words = self.commands.split(text, management=thread is None)
        except CommandError as e:
            await self.replies.send(thread, event.room_id, event.event_id, f"⚠️ {e}")
            return
        if words is not None:
            reply = await self.commands.run(caller, words)
            await self.p.audit.record(thread.id if thread else None, event.sender, "command", text)
            await self.replies.send(thread, event.room_id, event.event_id, reply.text)
            if reply.after:
                await reply.after()
            return
        if thread is None or not allows(level, PermissionLevel.OPERATOR):
            return  # viewers read; what they write stays in the room
        if isinstance(reply_to, str):
            approval = await self.p.approval_store.for_matrix_event(reply_to)
            if approval is not None and approval.thread_id == thread.id:
                await self._reply_decision(event, thread, approval, text)
                return
            if await self.handoffs.reply(event, thread, reply_to, text):
                return
        if content.get("msgtype") in FORWARDED_MSGTYPES and text:
            await self._queue(event, thread, text)

    async def _queue(
        self, event: ReceivedEvent, thread: Thread, text: str, *, source: Thread | None = None
    ) -> None:
        control = await self.p.controls.get(thread.id)
        if control.archived_at:
            await self.replies.send(
                thread, event.room_id, event.event_id, "This thread is archived: not forwarded."
            )
            return
        if source is not None:
            await self.handoffs.receive(event, thread, source, text)
            return
        if await self.p.inbox.queue(event.event_id, thread.id, event.room_id, event.sender, text):
            await self.p.audit.record(thread.id, event.sender, "message", event.event_id)
            if await self.ended(thread):
                # Kept for a resume, but nobody reads it now: say so at once, not never.
                await self.replies.send(thread, event.room_id, event.event_id, ended_note(thread))
                return
            self.p.signals.fire(thread_key(thread.id))

    async def ended(self, thread: Thread) -> bool:
        """Whether the session has ended: its latest hook event says so (the thread's status
        follows only once delivery has caught up); without events, the status."""
        last = await self.p.controls.last_event(thread.id)
        return last[0] == SESSION_END.name if last is not None else thread.status == "ended"

    async def _reply_decision(
        self, event: ReceivedEvent, thread: Thread, approval: Approval, text: str
    ) -> None:
        parsed = decisions.from_reply(text)
        if parsed is None:
            hint = "Reply `allow`, `always` or `deny <reason>` to decide this request."
            await self.replies.send(thread, event.room_id, event.event_id, hint)
            return
        await self._decide(event, thread, approval, *parsed, reply_to=event.event_id)

    async def _reaction(self, event: ReceivedEvent, thread: Thread) -> None:
        relates = (event.event.get("content") or {}).get("m.relates_to") or {}
        target, key = relates.get("event_id"), relates.get("key")
        if relates.get("rel_type") != "m.annotation" or not isinstance(target, str):
            return
        decision = decisions.from_reaction(key) if isinstance(key, str) else None
        if decision is None:
            await self._unknown_reaction(event, thread, target, key)
            return
        if await self.handoffs.react(event, thread, target, decision):
            return
        approval = await self.p.approval_store.for_matrix_event(target)
        if approval is None or approval.thread_id != thread.id:
            return
        level = await self.p.roles.level(event.sender, thread.id)
        if allows(level, PermissionLevel.OPERATOR):
            await self._decide(event, thread, approval, decision, None, reply_to=target)

    async def _unknown_reaction(
        self, event: ReceivedEvent, thread: Thread, target: str, key: object
    ) -> None:
        """A reaction that decides nothing, on a prompt still waiting for a decision, by
        someone who may decide: say once which reactions do (not once per reaction: a second
        unknown one on the same prompt is ignored)."""
        if not isinstance(key, str) or self.p.roles.is_bridge_user(event.sender):
            return
        approval = await self.p.approval_store.for_matrix_event(target)
        if approval is None or approval.thread_id != thread.id or approval.state != PENDING:
            return
        if approval.hook_event_id in self._hinted:
            return
        level = await self.p.roles.level(event.sender, thread.id)
        if not allows(level, PermissionLevel.OPERATOR):
            return
        if len(self._hinted) >= HINTS_KEPT:  # held requests end within the approval timeout
            self._hinted.clear()
        self._hinted.add(approval.hook_event_id)
        hint = decisions.unknown_reaction(key)
        await self.replies.send(thread, event.room_id, event.event_id, hint, reply_to=target)

    async def _decide(
        self,
        event: ReceivedEvent,
        thread: Thread,
        approval: Approval,
        decision: str,
        reason: str | None,
        *,
        reply_to: str,
    ) -> None:
        won = approval.state == PENDING and await self.p.approvals.decide(
            approval, decision, event.sender, reason=reason, event_id=event.event_id
        )
        if won:
            detail = f"{approval.hook_event_id} {decision}" + (f": {reason}" if reason else "")
            await self.p.audit.record(thread.id, event.sender, "approval", detail)
            return
        settled = await self.p.approval_store.get(approval.hook_event_id) or approval
        note = decisions.already_decided(settled, self.p.options.approval_timeout)
        await self.replies.send(
            thread,
            event.room_id,
            event.event_id,
            f"{event.sender}: {note}",
            reply_to=reply_to,
            mention=event.sender,
        )
