"""Commands that steer one thread: ``listen``, ``unlisten``, ``stop``, ``mute``, ``unmute``,
``archive``, ``invite``. Each leaves an audit row and wakes whatever hook answer it affects."""

from __future__ import annotations

import argparse
import re

from claude_bridge.config import PermissionLevel
from claude_bridge.control.commands import THREAD, Caller, CommandError, CommandSet, Reply
from claude_bridge.control.decisions import DENY
from claude_bridge.control.info_commands import clock
from claude_bridge.control.parts import Parts
from claude_bridge.control.roles import OVERRIDE_LEVELS
from claude_bridge.control.signals import thread_key
from claude_bridge.log import get_logger
from claude_bridge.matrix.client import MatrixError
from claude_bridge.room_state import ENDED, THREAD_STATE
from claude_bridge.store import Thread
from claude_bridge.store.database import now_ms

log = get_logger("commands")

USER_ID = re.compile(r"^@[^:\s]+:\S+$")


def _thread(caller: Caller) -> Thread:
    assert caller.thread is not None  # these commands are declared for thread rooms only
    return caller.thread


class ThreadCommands:
    def __init__(self, parts: Parts, commands: CommandSet) -> None:
        self.p = parts
        op, admin = PermissionLevel.OPERATOR, PermissionLevel.ADMIN
        minutes = parts.options.listen_minutes
        add = commands.add
        add(
            "listen",
            f"When Claude finishes a turn, wait for the next message here instead of stopping "
            f"(for MINUTES, default {minutes}).",
            self.listen,
            level=op,
            rooms=(THREAD,),
            arguments=[(("minutes",), {"nargs": "?", "type": int, "default": minutes})],
        )
        add("unlisten", "End listen mode.", self.unlisten, level=op, rooms=(THREAD,))
        add(
            "stop",
            "Tell Claude Code to stop at its next hook (continue: false).",
            self.stop,
            level=op,
            rooms=(THREAD,),
        )
        add("mute", "Stop mirroring tool calls in this room.", self.mute, level=op, rooms=(THREAD,))
        add("unmute", "Mirror tool calls again.", self.unmute, level=op, rooms=(THREAD,))
        add(
            "archive",
            "End this thread: the room is marked ended and the session's ghost leaves.",
            self.archive,
            level=op,
            rooms=(THREAD,),
        )
        add(
            "invite",
            "Give someone a level in this room only (none: shut them out) and invite them.",
            self.invite,
            level=admin,
            rooms=(THREAD,),
            arguments=[
                (("user",), {"help": "a Matrix user id, @name:server"}),
                (("level",), {"nargs": "?", "default": "viewer", "choices": OVERRIDE_LEVELS}),
            ],
        )

    async def listen(self, caller: Caller, args: argparse.Namespace) -> Reply:
        if not 1 <= args.minutes <= 24 * 60:
            raise CommandError("MINUTES must be between 1 and 1440.")
        thread = _thread(caller)
        until = now_ms() + args.minutes * 60_000
        await self.p.controls.set_listen(thread.id, until, caller.user_id)
        await self.p.audit.record(thread.id, caller.user_id, "listen", f"{args.minutes} min")
        self.p.signals.fire(thread_key(thread.id))
        hold = round(self.p.options.max_hold / 60)
        return Reply(
            f"👂 Listening until {clock(until)}: when Claude finishes a turn it waits for the next "
            f"message here (up to {hold} min at a time) instead of stopping."
        )

    async def unlisten(self, caller: Caller, args: argparse.Namespace) -> Reply:
        thread = _thread(caller)
        await self.p.controls.set_listen(thread.id, None, None)
        await self.p.audit.record(thread.id, caller.user_id, "unlisten")
        self.p.signals.fire(thread_key(thread.id))
        return Reply("Listen mode is off: Claude stops at the end of its turns again.")

    async def stop(self, caller: Caller, args: argparse.Namespace) -> Reply:
        thread = _thread(caller)
        await self.p.controls.request_stop(thread.id, caller.user_id)
        await self.p.audit.record(thread.id, caller.user_id, "stop")
        # A permission question held right now would only answer after its timeout: deny it.
        for approval in await self.p.approval_store.pending(thread.id):
            await self.p.approvals.decide(
                approval, DENY, caller.user_id, reason="stop requested", event_id=caller.event_id
            )
        self.p.signals.fire(thread_key(thread.id))
        return Reply("⏹️ Claude Code will be told to stop at its next hook (tool call or turn end).")

    async def mute(self, caller: Caller, args: argparse.Namespace) -> Reply:
        return await self._mute(caller, True)

    async def unmute(self, caller: Caller, args: argparse.Namespace) -> Reply:
        return await self._mute(caller, False)

    async def _mute(self, caller: Caller, muted: bool) -> Reply:
        thread = _thread(caller)
        await self.p.controls.set_muted(thread.id, muted)
        (self.p.muted.add if muted else self.p.muted.discard)(thread.id)
        await self.p.audit.record(thread.id, caller.user_id, "mute" if muted else "unmute")
        if muted:
            return Reply("🔇 Tool calls are no longer mirrored here (approvals still are).")
        return Reply("🔊 Tool calls are mirrored here again.")

    async def archive(self, caller: Caller, args: argparse.Namespace) -> Reply:
        thread = _thread(caller)
        room_id, ghost = caller.room_id, thread.ghost_mxid
        await self.p.controls.set_archived(thread.id, caller.user_id)
        withdrawn = await self.p.inbox.withdraw_thread(thread.id)
        # "archived", not "ended": delivery stops mirroring for good (the ghost leaves the room).
        await self.p.threads.set_status(thread.id, "archived")
        await self.p.audit.record(thread.id, caller.user_id, "archive", f"{withdrawn} withdrawn")
        router = self.p.router
        await self.p.client.send_state(
            ghost, room_id, "m.room.topic", "", router.topic(thread, ENDED, archived=True)
        )
        await self.p.client.send_state(
            ghost, room_id, THREAD_STATE, "", router.thread_state(thread, ENDED, archived=True)
        )
        self.p.signals.fire(thread_key(thread.id))

        async def leave() -> None:
            await self.p.client.leave(ghost, room_id)

        note = f" {withdrawn} queued message(s) withdrawn." if withdrawn else ""
        return Reply(f"📦 Archived by {caller.user_id}: this thread has ended.{note}", after=leave)

    async def invite(self, caller: Caller, args: argparse.Namespace) -> Reply:
        thread = _thread(caller)
        if not USER_ID.match(args.user) or self.p.roles.is_bridge_user(args.user):
            raise CommandError(f"`{args.user}` is not a user id like @name:server.")
        await self.p.members.set(thread.id, args.user, args.level, caller.user_id)
        await self.p.audit.record(thread.id, caller.user_id, "member", f"{args.user} {args.level}")
        if args.level != "none":
            await self.p.client.invite(thread.ghost_mxid, caller.room_id, args.user)
        # The room follows: an operator is listed at 50, a viewer not; with ``none`` they are
        # banned if present (a kick would leave them the room's history, see room_check).
        if self.p.recheck_room is not None:
            try:
                await self.p.recheck_room(thread)
            except MatrixError as e:
                log.warning("could not update the room", thread_id=thread.id, error=str(e))
        if args.level == "none":
            return Reply(f"{args.user} has no access to this room any more.")
        level = await self.p.roles.level(args.user, thread.id)
        shown = level.value if level else "none"
        return Reply(f"Invited {args.user} as {shown} in this room.")
