"""Who may be in the bridge's rooms, enforced as membership and room settings change.

- **Thread rooms**: anyone who joins or is invited (by anyone but the bridge) without a level in
  that thread is banned at once, with the reason (a ban, not a kick: ``room_check`` says why). A
  knock from someone with a level is let in (the room's alias leads to a knock); one from anyone
  else is left pending, which shows them nothing. When someone with a level joins, or a person
  sends any state (possible only in rooms made before the room rules), the whole room is checked
  again (``RoomCheck``).
- **Project spaces**: the same, by the global level.
- **The bot's direct chat**: the bot accepts a direct chat from someone with a level; it leaves
  a chat that someone without one joins or is invited to, or that is encrypted, saying why.
- **Ghosts** decline invites to rooms that are not their thread's.
- **Encryption**: the bridge cannot read an encrypted room. When someone turns it on, the room
  gets one notice saying so, and from then on nothing anyone writes there reaches Claude.
"""

from __future__ import annotations

from claude_bridge.control.info_commands import InfoCommands
from claude_bridge.control.parts import Parts
from claude_bridge.control.room import RoomReplies
from claude_bridge.control.room_check import IN_ROOM, RoomCheck, ban_reason
from claude_bridge.log import get_logger
from claude_bridge.matrix.client import MatrixError
from claude_bridge.matrix.inbound_events import (
    Encryption,
    Inbound,
    Membership,
    Redaction,
    StateChange,
)
from claude_bridge.render.content import message
from claude_bridge.store import Thread
from claude_bridge.store.room_policy import RoomPolicyStore
from claude_bridge.store.spaces import SpaceStore

log = get_logger("rooms")


def encrypted_notice(sender: str) -> str:
    return (
        f"🔒 {sender} turned on end-to-end encryption in this room. The bridge cannot read "
        "encrypted messages, so from now on **nothing written here reaches Claude**: no messages, "
        "no approvals, no `!claude` commands. The session is still shown here, but what the "
        "bridge posts is not encrypted. Answer Claude in its terminal instead."
    )


BOT_CANNOT_READ = (
    "🔒 This chat is encrypted and the bridge cannot read encrypted messages. Start a direct "
    "chat with me without encryption to use the commands."
)


def bot_leaves(user_id: str) -> str:
    return (
        f"👋 Leaving: {user_id} has no level in this bridge, and what I answer here is meant "
        "for people who have one."
    )


class RoomGuard:
    def __init__(
        self,
        parts: Parts,
        check: RoomCheck,
        store: RoomPolicyStore,
        spaces: SpaceStore,
        info: InfoCommands,
        replies: RoomReplies,
    ) -> None:
        self.p = parts
        self.check = check
        self.store = store
        self.spaces = spaces
        self.info = info
        self.replies = replies
        self.encrypted: set[str] = set()

    async def start(self) -> None:
        self.encrypted = await self.store.encrypted_rooms()

    async def handle(self, event: Inbound) -> bool:
        """Act on membership, room state and encryption; True when nothing else may see the event
        (it was one of those, or it comes from an encrypted room)."""
        match event:
            case Membership():
                await self._member(event)
            case Encryption():
                await self._encryption(event)
            case StateChange():
                # Under the room rules no person sends state; one who could is in a room from
                # before them (or given power by hand): check the room.
                await self._settings(event)
            case _:
                # A redaction still counts in an encrypted room: it withdraws what was queued.
                return event.room_id in self.encrypted and not isinstance(event, Redaction)
        return True

    # --- membership -----------------------------------------------------------------------------

    async def _member(self, event: Membership) -> None:
        target, membership = event.target, event.membership
        if target is None or membership not in (*IN_ROOM, "knock"):
            return
        bot = self.p.client.bot_mxid
        if target == bot:
            if membership == "invite":
                await self._bot_invited(event)
            return
        thread = await self.p.threads.get_by_room(event.room_id)
        if self.p.roles.is_bridge_user(target):
            if membership == "invite" and (thread is None or target != thread.ghost_mxid):
                await self._decline(target, event.room_id)
            return
        if thread is not None:
            level = await self.p.roles.level(target, thread.id)
        elif await self.spaces.is_space(event.room_id):
            level = self.p.roles.global_level(target)
        else:
            if membership in IN_ROOM and self.p.roles.global_level(target) is None:
                await self._bot_leave(event.room_id, bot_leaves(target), event.event_id)
            return
        if membership == "knock":
            if level is not None and thread is not None:
                await self.p.client.invite(thread.ghost_mxid, event.room_id, target)
                await self.p.audit.record(thread.id, target, "join", "knock accepted")
        elif level is None:
            await self._ban(event, thread, target)
        elif membership == "join":
            await self._recheck(event.room_id, thread)

    async def _ban(self, event: Membership, thread: Thread | None, target: str) -> None:
        actor = thread.ghost_mxid if thread else self.p.client.bot_mxid
        membership = event.membership
        try:
            await self.p.client.ban(actor, event.room_id, target, ban_reason(target))
        except MatrixError as e:
            if e.temporary:
                raise
            # Banned by an earlier try already, or the bridge lost its power here (its ghost
            # left an archived room).
            log.warning("could not ban", room_id=event.room_id, user=target, error=str(e))
            return
        log.info(
            "removed someone without a level",
            room_id=event.room_id,
            user=target,
            membership=membership,
            by=event.sender,
        )
        detail = f"{target} ({membership}, by {event.sender})"
        await self.p.audit.record(thread.id if thread else None, actor, "ban", detail)

    async def _decline(self, ghost: str, room_id: str) -> None:
        try:
            await self.p.client.leave(ghost, room_id)
        except MatrixError as e:
            log.info("could not decline a ghost's invite", room_id=room_id, error=str(e))

    # --- the bot's direct chat -----------------------------------------------------------------

    async def _bot_invited(self, event: Membership) -> None:
        client, bot = self.p.client, self.p.client.bot_mxid
        # A direct chat with the bot is its management room, for people with a level. Only
        # direct chats: in a group room every line would be read as a command.
        if not event.is_direct or self.p.roles.global_level(event.sender) is None:
            await client.leave(bot, event.room_id)
            return
        await client.join(bot, event.room_id)
        problem = None
        for e in await client.room_state(bot, event.room_id):
            if e.get("type") == "m.room.encryption":
                problem = BOT_CANNOT_READ
            elif e.get("type") == "m.room.member" and problem is None:
                user = e.get("state_key")
                present = (e.get("content") or {}).get("membership") in IN_ROOM
                if (
                    isinstance(user, str)
                    and present
                    and self.p.roles.global_level(user) is None
                    and not self.p.roles.is_bridge_user(user)
                ):
                    problem = bot_leaves(user)
        if problem is not None:
            await self._bot_leave(event.room_id, problem, answering=event.event_id)
            return
        welcome = await self.info.welcome(event.sender)
        await self.replies.send(None, event.room_id, event.event_id, welcome, as_reply=False)

    async def _bot_leave(self, room_id: str, why: str, answering: str) -> None:
        """Say why, then leave. The bot may not be in the room at all (a ghost's pending invite
        brings its events too): then the first request is refused and that is all."""
        client, bot = self.p.client, self.p.client.bot_mxid
        try:
            await client.send_event(
                bot, room_id, "m.room.message", message(why), f"cb.leave.{answering}"
            )
            await client.leave(bot, room_id)
        except MatrixError as e:
            if e.temporary:
                raise
            log.debug("the bot is not in the room", room_id=room_id, error=str(e))
            return
        log.info("the bot left a chat", room_id=room_id, why=why)

    # --- settings and encryption ---------------------------------------------------------------

    async def _settings(self, event: Inbound) -> None:
        thread = await self.p.threads.get_by_room(event.room_id)
        if thread is None and not await self.spaces.is_space(event.room_id):
            return
        log.warning(
            "someone changed a room's settings; checking it",
            room_id=event.room_id,
            user=event.sender,
            type=event.type,
        )
        await self._recheck(event.room_id, thread)

    async def _recheck(self, room_id: str, thread: Thread | None) -> None:
        if thread is not None:
            await self.check.thread_room(thread)
        else:
            await self.check.space(room_id)

    async def _encryption(self, event: Encryption) -> None:
        await self.encrypted_room(event.room_id, event.sender, event.event_id)
        # Whoever could do that had a power the room rules deny them.
        await self._settings(event)

    async def encrypted_room(self, room_id: str, sender: str, event_id: str) -> None:
        """The room is encrypted now: say so once, then take nothing more from it."""
        if room_id in self.encrypted:
            return
        thread = await self.p.threads.get_by_room(room_id)
        if thread is not None:
            # Its transaction id derives from the encryption event: a retry posts it once.
            await self.replies.send(
                thread, room_id, event_id, encrypted_notice(sender), as_reply=False
            )
        elif not await self.spaces.is_space(room_id):
            await self._bot_leave(room_id, BOT_CANNOT_READ, event_id)
        await self.store.set_encrypted(room_id, sender)
        self.encrypted.add(room_id)
        log.warning("room encrypted: nothing from it reaches Claude", room_id=room_id, by=sender)
        await self.p.audit.record(thread.id if thread else None, sender, "encrypted", room_id)
