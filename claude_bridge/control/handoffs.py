"""Hand-offs: a message one session's Claude posts into another session's room (threads API
``POST …/messages``, the MCP tool ``claude_send_to_thread``).

No person wrote it, and what one Claude read (a web page, a file) could have put it there, so it
does not reach the other Claude the way an operator's message does:

* It counts as a hand-off only when the ghost of the thread its mark names sent it (``source_of``);
  the mark on anyone else's event means nothing.
* By default (``bridge.control.handoffs: approve``) it is stored ``proposed`` and the bridge asks
  the room; an operator's ✅ or reply ``allow`` (on it or on the bridge's notice) queues it, ❌ or
  ``deny`` drops it. With ``direct_same_token`` a hand-off between two sessions of the same hook
  token is queued at once.
* Claude is told it comes from another session's Claude, naming that thread (``framing``).
"""

from __future__ import annotations

from claude_bridge.config import PermissionLevel
from claude_bridge.config.sections.control import HandoffMode
from claude_bridge.control import decisions
from claude_bridge.control.decisions import ALLOW, ALWAYS, DENY
from claude_bridge.control.parts import Parts
from claude_bridge.control.roles import allows
from claude_bridge.control.room import RoomReplies
from claude_bridge.control.signals import thread_key
from claude_bridge.log import get_logger
from claude_bridge.matrix.inbound_events import Inbound, Message, Reaction
from claude_bridge.store import Thread
from claude_bridge.store.session_messages import PROPOSED, QUEUED, SessionMessage

log = get_logger("handoffs")

DIRECT, PROPOSAL = "direct", "proposed"


def owner(thread: Thread) -> str | None:
    """The hook token a thread belongs to (the one whose hooks opened it)."""
    return thread.token_name


def delivery(mode: HandoffMode, source: Thread, target: Thread) -> str:
    """``direct`` when the config lets this hand-off through without a person, else ``proposed``."""
    same = owner(source) is not None and owner(source) == owner(target)
    return DIRECT if mode == "direct_same_token" and same else PROPOSAL


class Handoffs:
    def __init__(self, parts: Parts, replies: RoomReplies) -> None:
        self.p = parts
        self.replies = replies

    async def source_of(self, event: Message, thread: Thread) -> Thread | None:
        """The sending thread, when ``event`` (from one of the bridge's own users) is a hand-off
        into ``thread`` as the threads API makes them; None for anything else."""
        claimed = event.handoff_claim
        if claimed is None or claimed == thread.id:
            return None
        if event.msgtype != "m.text" or event.has_relation:
            return None  # the API posts plain new messages: never edits or replies
        source = await self.p.threads.get(claimed)
        if source is None or source.ghost_mxid != event.sender:
            log.warning(
                "a hand-off mark not sent by its thread's ghost: ignored",
                event_id=event.event_id,
                sender=event.sender,
                claimed=claimed,
            )
            return None
        return source

    async def receive(self, event: Message, thread: Thread, source: Thread, text: str) -> None:
        how = delivery(self.p.options.handoffs, source, thread)
        state = QUEUED if how == DIRECT else PROPOSED
        inbox = self.p.inbox
        if await inbox.queue(
            event.event_id,
            thread.id,
            event.room_id,
            event.sender,
            text,
            from_thread=source.id,
            state=state,
        ):
            await self.p.audit.record(thread.id, event.sender, f"handoff {how}", event.event_id)
            if state == QUEUED:
                self.p.signals.fire(thread_key(thread.id))
        message = await inbox.get(event.event_id)
        if message is None or message.state != PROPOSED or message.proposal_event:
            return
        # Also on a replay: the notice's transaction id makes a second one impossible.
        mirror = self.p.router.config.bridge.mirror
        notice = await self.replies.send(
            thread,
            event.room_id,
            event.event_id,
            f"🤝 **A hand-off from another session's Claude** (thread `{source.id}`"
            + (f", {source.project_name}" if source.project_name else "")
            + "): no person wrote it. It reaches this session's Claude only when an operator "
            "reacts ✅ to it or to this notice (or replies `allow`); ❌ or `deny` drops it.",
            mentions=self.p.router.permissions.invitees() if mirror.mention_operators else (),
        )
        if notice is not None:
            await inbox.set_proposal_event(message.id, notice)

    async def react(self, event: Reaction, thread: Thread, target: str, decision: str) -> bool:
        """A ✅ or ❌ on a hand-off (or its notice); False when ``target`` is no hand-off."""
        message = await self.p.inbox.proposal(thread.id, target)
        if message is None:
            return False
        await self._decide(event, thread, message, decision)
        return True

    async def reply(self, event: Message, thread: Thread, target: str, text: str) -> bool:
        """An operator's reply to a waiting hand-off (or its notice): ``allow`` or ``deny``, as
        for tool approvals. False when ``target`` is no hand-off waiting for a decision (the
        reply is then an ordinary message)."""
        message = await self.p.inbox.proposal(thread.id, target)
        if message is None or message.state != PROPOSED:
            return False
        parsed = decisions.from_reply(text)
        if parsed is None:
            hint = "React ✅ or reply `allow` to let this hand-off through; ❌ or `deny` drops it."
            await self.replies.send(thread, event.room_id, event.event_id, hint)
        else:
            await self._decide(event, thread, message, parsed[0])
        return True

    async def _decide(
        self, event: Inbound, thread: Thread, message: SessionMessage, decision: str
    ) -> None:
        level = await self.p.roles.level(event.sender, thread.id)
        if not allows(level, PermissionLevel.OPERATOR) or decision not in (ALLOW, ALWAYS, DENY):
            return
        approve = decision != DENY
        if await self.p.inbox.decide_proposal(message, approve, event.sender):
            what = "handoff approved" if approve else "handoff rejected"
            await self.p.audit.record(thread.id, event.sender, what, message.event_id)
            if approve:
                self.p.signals.fire(thread_key(thread.id))
            text = (
                f"✅ Let through by {event.sender}: it goes to this session's Claude."
                if approve
                else f"❌ Dropped by {event.sender}: this session's Claude does not get it."
            )
        else:
            settled = await self.p.inbox.get(message.event_id) or message
            text = f"{event.sender}: this hand-off was already decided ({settled.state})."
        await self.replies.send(
            thread, event.room_id, event.event_id, text, reply_to=message.event_id
        )
