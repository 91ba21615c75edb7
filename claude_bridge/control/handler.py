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

from claude_bridge.config import PermissionLevel
from claude_bridge.control import decisions
from claude_bridge.control.attachments import AttachmentIntake
from claude_bridge.control.commands import Caller, CommandError, CommandSet
from claude_bridge.control.handoffs import Handoffs
from claude_bridge.control.info_commands import InfoCommands
from claude_bridge.control.parts import Parts
from claude_bridge.control.roles import allows
from claude_bridge.control.room import RoomReplies
from claude_bridge.control.room_guard import RoomGuard
from claude_bridge.control.signals import thread_key
from claude_bridge.events.catalogue import SESSION_END
from claude_bridge.matrix.inbound_events import (
    Edit,
    FileMessage,
    Inbound,
    Message,
    Reaction,
    Redaction,
)
from claude_bridge.room_state import resume_command
from claude_bridge.store import Thread
from claude_bridge.store.approvals import PENDING, Approval
from claude_bridge.store.session_messages import StoredFile

FORWARDED_MSGTYPES = frozenset({"m.text", "m.emote"})
FILES_GO_TO_THREADS = (
    "📎 Files reach Claude from a session's own room (`#claude-thread-…`): send it there."
)
HINTS_KEPT = 10_000
OPERATOR = PermissionLevel.OPERATOR


def ended_note(thread: Thread) -> str:
    """The answer to a message written into an ended session's room."""
    where = f" (in `{thread.project_path}`)" if thread.project_path else ""
    return (
        "⏹️ This session has ended: Claude won't read this until it is resumed on the host "
        f"with `{resume_command(thread.session_id)}`{where}. Your message waits for that; "
        "redact it to withdraw it."
    )


def written(event: Message) -> bool:
    """Whether someone wrote it: a string body, and no notice (the voice of bots, never acted on)."""
    return event.body is not None and event.msgtype != "m.notice"


class InboundHandler:
    def __init__(
        self,
        parts: Parts,
        commands: CommandSet,
        info: InfoCommands,
        replies: RoomReplies,
        guard: RoomGuard,
        *,
        intake: AttachmentIntake | None = None,
    ) -> None:
        self.p = parts
        self.intake = intake
        self.commands = commands
        self.info = info
        self.replies = replies
        self.guard = guard
        self.handoffs = Handoffs(parts, replies)
        # Prompts whose unknown reaction was answered. In memory: a restart ends every held
        # request (``Control.start``), so none outlives it.
        self._hinted: set[int] = set()

    async def __call__(self, event: Inbound) -> None:
        # Membership, room settings and encryption are the guard's; an encrypted room's events
        # stop there too.
        if await self.guard.handle(event):
            return
        thread = await self.p.threads.get_by_room(event.room_id)
        match event:
            case Edit():
                await self._edit(event, thread)
            case Message():
                await self._message(event, thread)
            case Reaction() if thread is not None:
                await self._reaction(event, thread)
            case Redaction() if thread is not None:
                await self._redaction(event, thread)

    async def _redaction(self, event: Redaction, thread: Thread) -> None:
        """Withdraw a queued message: by its sender, or by an operator of the thread."""
        message = await self.p.inbox.get(event.redacts) if event.redacts is not None else None
        if message is None or message.thread_id != thread.id:
            return
        if event.sender != message.sender:
            level = await self.p.roles.level(event.sender, thread.id)
            if not allows(level, OPERATOR):
                return
        if withdrawn := await self.p.inbox.withdraw(message.event_id, thread.id):
            await self.p.audit.record(thread.id, event.sender, "withdraw", message.event_id)
            if withdrawn.has_file and self.intake is not None:
                await self.intake.discard(withdrawn)  # never to be delivered: gone now

    async def _message(self, event: Message, thread: Thread | None) -> None:
        """A new message: from the bridge's own users, a hand-off or nothing; from a person with
        a level, a command, an approval's decision or (an operator's) words for Claude."""
        if not written(event):
            return
        if self.p.roles.is_bridge_user(event.sender):
            if thread is not None:
                await self._handoff(event, thread)
            return
        level = await self.p.roles.level(event.sender, thread.id if thread else None)
        if isinstance(event, FileMessage):
            if thread is not None and allows(level, OPERATOR):
                await self._file(event, thread)
            elif thread is None and level is not None:  # the bot's chat: say where files go
                await self.replies.send(None, event.room_id, event.event_id, FILES_GO_TO_THREADS)
            return  # a viewer's file stays in the room; a file's caption is never a command
        if level is None or await self._command(event, thread, level):
            return
        if thread is None or not allows(level, OPERATOR):
            return  # viewers read; what they write stays in the room
        if await self._reply_decision(event, thread):
            return
        if event.msgtype in FORWARDED_MSGTYPES and event.text:
            await self._queue(event, thread, event.text)

    async def _file(self, event: FileMessage, thread: Thread) -> None:
        """An operator's file: kept by the bridge and queued like a text (``attachments``)."""
        if self.intake is None or await self.p.inbox.get(event.event_id) is not None:
            return  # handled before (the bridge stopped before marking the event processed)
        control = await self.p.controls.get(thread.id)
        if control.archived_at:
            await self.replies.send(
                thread, event.room_id, event.event_id, "This thread is archived: not forwarded."
            )
            return
        stored = await self.intake.take(event, thread)
        if stored is not None:
            await self._queue(event, thread, event.caption, file=stored)

    async def _handoff(self, event: Message, thread: Thread) -> None:
        """Only a hand-off gets here from the bridge's own users, and only a genuine one (its own
        thread's ghost, a plain new message) goes anywhere."""
        source = await self.handoffs.source_of(event, thread)
        if source is not None and event.text:
            await self._queue(event, thread, event.text, source=source)

    async def _edit(self, event: Edit, thread: Thread | None) -> None:
        """An operator's edit replaces the text of their message while it is still queued."""
        if thread is None or not written(event):
            return
        if event.replaces is None or event.new_body is None:
            return
        level = await self.p.roles.level(event.sender, thread.id)  # none for the bridge's users
        if not allows(level, OPERATOR):
            return
        if await self.p.inbox.edit(event.replaces, thread.id, event.sender, event.new_body):
            await self.p.audit.record(thread.id, event.sender, "edit", event.replaces)

    async def _command(self, event: Message, thread: Thread | None, level: PermissionLevel) -> bool:
        """Run ``event`` if it is a command (always, in a management room); False if it is not."""
        try:
            words = self.commands.split(event.text, management=thread is None)
        except CommandError as e:
            await self.replies.send(thread, event.room_id, event.event_id, f"⚠️ {e}")
            return True
        if words is None:
            return False
        caller = Caller(event.sender, level, event.room_id, event.event_id, thread)
        reply = await self.commands.run(caller, words)
        thread_id = thread.id if thread else None
        await self.p.audit.record(thread_id, event.sender, "command", event.text)
        await self.replies.send(thread, event.room_id, event.event_id, reply.text)
        if reply.after:
            await reply.after()
        return True

    async def _queue(
        self,
        event: Message,
        thread: Thread,
        text: str,
        *,
        source: Thread | None = None,
        file: StoredFile | None = None,
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
        if await self.p.inbox.queue(
            event.event_id, thread.id, event.room_id, event.sender, text, file=file
        ):
            what = "message" if file is None else "file"
            await self.p.audit.record(thread.id, event.sender, what, event.event_id)
            if await self.ended(thread):
                # Kept for a resume, but nobody reads it now: say so at once, not never.
                await self.replies.send(thread, event.room_id, event.event_id, ended_note(thread))
                return
            self.p.signals.fire(thread_key(thread.id))
            if self.p.offer_typing is not None:
                await self.p.offer_typing(thread.id)

    async def ended(self, thread: Thread) -> bool:
        """Whether the session has ended: its latest hook event says so (the thread's status
        follows only once delivery has caught up); without events, the status."""
        last = await self.p.controls.last_event(thread.id)
        return last[0] == SESSION_END.name if last is not None else thread.status == "ended"

    async def _reply_decision(self, event: Message, thread: Thread) -> bool:
        """Decide the approval or the waiting hand-off ``event`` replies to; False if it replies
        to neither in this thread."""
        if event.reply_to is None:
            return False
        approval = await self.p.approval_store.for_matrix_event(event.reply_to)
        if approval is None or approval.thread_id != thread.id:
            return await self.handoffs.reply(event, thread, event.reply_to, event.text)
        parsed = decisions.from_reply(event.text)
        if parsed is None:
            hint = "Reply `allow`, `always` or `deny <reason>` to decide this request."
            await self.replies.send(thread, event.room_id, event.event_id, hint)
        else:
            await self._decide(event, thread, approval, *parsed, reply_to=event.event_id)
        return True

    async def _reaction(self, event: Reaction, thread: Thread) -> None:
        if event.target is None:
            return
        decision = decisions.from_reaction(event.key) if event.key is not None else None
        if decision is None:
            await self._unknown_reaction(event, thread, event.target)
            return
        if await self.handoffs.react(event, thread, event.target, decision):
            return
        approval = await self.p.approval_store.for_matrix_event(event.target)
        if approval is None or approval.thread_id != thread.id:
            return
        level = await self.p.roles.level(event.sender, thread.id)
        if allows(level, OPERATOR):
            await self._decide(event, thread, approval, decision, None, reply_to=event.target)

    async def _unknown_reaction(self, event: Reaction, thread: Thread, target: str) -> None:
        """A reaction that decides nothing, on a prompt still waiting for a decision, by
        someone who may decide: say once which reactions do (not once per reaction: a second
        unknown one on the same prompt is ignored)."""
        if event.key is None or self.p.roles.is_bridge_user(event.sender):
            return
        approval = await self.p.approval_store.for_matrix_event(target)
        if approval is None or approval.thread_id != thread.id or approval.state != PENDING:
            return
        if approval.hook_event_id in self._hinted:
            return
        level = await self.p.roles.level(event.sender, thread.id)
        if not allows(level, OPERATOR):
            return
        if len(self._hinted) >= HINTS_KEPT:  # held requests end within the approval timeout
            self._hinted.clear()
        self._hinted.add(approval.hook_event_id)
        hint = decisions.unknown_reaction(event.key)
        await self.replies.send(thread, event.room_id, event.event_id, hint, reply_to=target)

    async def _decide(
        self,
        event: Inbound,
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
