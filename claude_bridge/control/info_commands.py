"""Commands that tell: ``help``, ``status``, ``threads``, and ``join`` (an invite to a thread)."""

from __future__ import annotations

import argparse
import time
from urllib.parse import quote

from claude_bridge.config import PermissionLevel
from claude_bridge.control.commands import MANAGEMENT, Caller, CommandError, CommandSet, Reply
from claude_bridge.control.decisions import tool_summary
from claude_bridge.control.parts import Parts
from claude_bridge.control.roles import effective_level
from claude_bridge.room_state import resume_command
from claude_bridge.store import Thread
from claude_bridge.store.database import now_ms

LIST_LIMIT = 20
OVER = frozenset({"ended", "archived"})
"""Statuses of sessions that are not live."""


def ago(ms: int | None, now: int | None = None) -> str:
    if not ms:
        return "never"
    seconds = max(((now or now_ms()) - ms) // 1000, 0)
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def clock(ms: int) -> str:
    return time.strftime("%H:%M UTC", time.gmtime(ms / 1000))


def link(thread: Thread) -> str:
    label = thread.title or thread.project_name or thread.session_id[:8]
    return f"[{label}](https://matrix.to/#/{quote(thread.alias, safe=':')})"


class InfoCommands:
    def __init__(self, parts: Parts, commands: CommandSet) -> None:
        self.p = parts
        self.commands = commands
        viewer = PermissionLevel.VIEWER
        commands.add(
            "help",
            "Show the commands you can use here, or one command's arguments.",
            self.help,
            level=viewer,
            arguments=[(("command",), {"nargs": "?", "help": "a command to explain"})],
        )
        commands.add(
            "status",
            "The session, its project, last activity, queued messages and pending approvals "
            "(in a bot chat: every live session).",
            self.status,
            level=viewer,
        )
        commands.add(
            "threads",
            "List the sessions with links to their rooms.",
            self.threads,
            level=viewer,
            arguments=[(("--all",), {"action": "store_true", "help": "include ended sessions"})],
        )
        commands.add(
            "join",
            "Get invited to a session's room (by thread id, alias or the start of the session id).",
            self.join,
            level=viewer,
            rooms=(MANAGEMENT,),
            arguments=[(("thread",), {"help": "thread id, #alias or session id prefix"})],
        )

    async def welcome(self, user_id: str) -> str:
        return (
            "👋 I put every Claude Code session into a room of its own. Send `help` for what you "
            "can do here, `join <thread>` to get into a session's room.\n\n"
            + await self._overview(user_id)
        )

    async def visible(self, user_id: str, threads: list[Thread]) -> list[Thread]:
        """The threads whose room ``user_id`` may be in: someone shut out of one (``!claude
        invite … none``) must not read its title, project or activity in the bot's chat."""
        base = self.p.roles.global_level(user_id)
        overrides = await self.p.roles.members.of_user(user_id)
        return [t for t in threads if effective_level(base, overrides.get(t.id)) is not None]

    async def help(self, caller: Caller, args: argparse.Namespace) -> Reply:
        return Reply(self.commands.help(caller, args.command))

    async def status(self, caller: Caller, args: argparse.Namespace) -> Reply:
        if caller.thread is None:
            return Reply(await self._overview(caller.user_id))
        thread = caller.thread
        control = await self.p.controls.get(thread.id)
        last = await self.p.controls.last_event(thread.id)
        queued = await self.p.inbox.queued(thread.id, 10)
        pending = await self.p.approval_store.pending(thread.id)
        now = now_ms()
        lines = [
            f"**Session** `{thread.session_id}` · {thread.status}",
            f"**Project** {thread.project_name or '?'} (`{thread.project_path or '?'}`)",
            "**Last activity** " + (f"{ago(last[1], now)} ({last[0]})" if last else "none yet"),
            f"**Queue** {len(queued)} message(s) waiting for Claude"
            + (
                f" (the session has ended: `{resume_command(thread.session_id)}` goes on with it)"
                if queued and thread.status == "ended"
                else ""
            )
            + "".join(f"\n  - {m.sender}: {m.body[:80]}" for m in queued),
            f"**Pending approvals** {len(pending)}"
            + "".join(f"\n  - {tool_summary(a)} (asked {ago(a.created_at, now)})" for a in pending),
        ]
        if proposed := await self.p.inbox.proposals(thread.id, 10):
            lines.append(
                f"**Hand-offs waiting for an operator's ✅** {len(proposed)}"
                + "".join(f"\n  - from thread `{m.from_thread}`: {m.body[:80]}" for m in proposed)
            )
        if control.listening(now):
            lines.append(
                f"**Listening** until {clock(control.listen_until or now)} ({control.listen_by})"
            )
        if control.muted:
            lines.append("**Muted**: tool calls are not mirrored here")
        if control.stop_requested:
            lines.append(f"**Stop requested** by {control.stop_requested_by}")
        if control.archived_at:
            lines.append(f"**Archived** by {control.archived_by} {ago(control.archived_at, now)}")
        return Reply("\n\n".join(lines))

    async def _overview(self, user_id: str) -> str:
        threads = await self.visible(user_id, await self.p.threads.list(1000))
        live = [t for t in threads if t.status not in OVER]
        ids = {t.id for t in live}
        pending = [a for a in await self.p.approval_store.pending() if a.thread_id in ids]
        counts = await self.p.inbox.queued_by_thread()
        # Messages written into ended sessions wait for a resume: not queued for a live one.
        queued = sum(counts.get(t.id, 0) for t in live)
        held = sum(counts.get(t.id, 0) for t in threads if t.status == "ended")
        head = (
            f"{len(live)} live session(s), {queued} message(s) queued, "
            f"{len(pending)} approval(s) pending."
        )
        if held:
            head += f" {held} message(s) wait for an ended session to be resumed."
        return head + ("\n\n" + self._list(live) if live else "")

    def _list(self, threads: list[Thread]) -> str:
        shown = threads[:LIST_LIMIT]
        lines = [
            f"- {link(t)} — {t.project_name or '?'} · {t.status} · {ago(t.updated_at)}"
            for t in shown
        ]
        if len(threads) > len(shown):
            lines.append(f"- … and {len(threads) - len(shown)} more")
        return "\n".join(lines)

    async def threads(self, caller: Caller, args: argparse.Namespace) -> Reply:
        threads = await self.visible(caller.user_id, await self.p.threads.list(1000))
        if not args.all:
            threads = [t for t in threads if t.status not in OVER]
        if not threads:
            return Reply("No sessions yet." if args.all else "No live sessions.")
        return Reply(self._list(threads))

    async def join(self, caller: Caller, args: argparse.Namespace) -> Reply:
        thread = await self.find(args.thread)
        if thread.room_id is None:
            raise CommandError("That session has no room yet.")
        if await self.p.roles.level(caller.user_id, thread.id) is None:
            raise CommandError("You have no access to that session's room.")
        await self.p.client.invite(thread.ghost_mxid, thread.room_id, caller.user_id)
        await self.p.audit.record(thread.id, caller.user_id, "join")
        return Reply(f"Invited you to {link(thread)}.")

    async def find(self, ref: str) -> Thread:
        ref = self.p.router.names.thread_in_reference(ref.strip())
        exact = await self.p.threads.get(ref.lower())
        if exact is not None:
            return exact
        found = [t for t in await self.p.threads.list(1000) if t.id.startswith(ref.lower())]
        if len(found) != 1:
            raise CommandError(
                f"No session matches `{ref}`."
                if not found
                else f"`{ref}` matches several sessions."
            )
        return found[0]
