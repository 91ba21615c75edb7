"""``Control``: steering, built from the bridge's parts, handed to the composition root.

The bridge wires five things from it: ``respond`` (the hook server's answers), ``handle`` (an
inbound Matrix handler), ``add_routes`` (the background waiter's and the host runners' long-polls
on the hook server),
``renderer`` (so ``!claude mute`` takes effect in delivery) and ``room_sweep`` (the start-up
check of every room, started once the homeserver answers). ``release`` ends every held hook
answer with ``{}`` and must run before the hook server stops, or its shutdown waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path

from mautrix.util.async_db import Database

from claude_bridge import host_files
from claude_bridge.config import Config
from claude_bridge.config.sections.mirror import mirror_options
from claude_bridge.control.approvals import Approvals
from claude_bridge.control.attached_reads import AttachedReads
from claude_bridge.control.attachments import AttachmentIntake, held_note
from claude_bridge.control.commands import CommandSet
from claude_bridge.control.file_carrier import FILE_ROUTE, FileCarrier, FileRoute
from claude_bridge.control.file_requests import REQUEST_ROUTE, FileRequests
from claude_bridge.control.handler import InboundHandler
from claude_bridge.control.handoff_expiry import HandoffExpiry
from claude_bridge.control.info_commands import InfoCommands
from claude_bridge.control.messages import MessageQueue
from claude_bridge.control.parts import Parts
from claude_bridge.control.receipts import Receipts
from claude_bridge.control.responder import Responder
from claude_bridge.control.roles import Roles
from claude_bridge.control.room import RoomReplies
from claude_bridge.control.room_check import RoomCheck
from claude_bridge.control.room_guard import RoomGuard
from claude_bridge.control.room_sweep import RoomSweep
from claude_bridge.control.runner_commands import RunnerCommands
from claude_bridge.control.runner_poll import POLL_PATH, RunnerPoll
from claude_bridge.control.runner_rooms import RunnerRooms
from claude_bridge.control.runner_typing import RunnerTyping
from claude_bridge.control.runners import Runners
from claude_bridge.control.signals import Signals
from claude_bridge.control.thread_commands import ThreadCommands
from claude_bridge.control.waiter import WAIT_PATH, Waiter
from claude_bridge.events.catalogue import CATALOGUE
from claude_bridge.events.models import HookEvent, UserPromptSubmit
from claude_bridge.hooks.server import HookServer
from claude_bridge.ids import MatrixNames
from claude_bridge.log import get_logger
from claude_bridge.matrix.client import MatrixClient
from claude_bridge.permissions import Permissions
from claude_bridge.render.messages import PROMPT_BY, OutboundMessage, RenderContext
from claude_bridge.router import ThreadRouter
from claude_bridge.store import ThreadStore
from claude_bridge.store.approvals import ApprovalStore
from claude_bridge.store.audit import AuditLog
from claude_bridge.store.database import now_ms
from claude_bridge.store.file_requests import FileRequestStore
from claude_bridge.store.room_policy import RoomPolicyStore
from claude_bridge.store.runner_jobs import RunnerJobStore
from claude_bridge.store.runners import RunnerStore
from claude_bridge.store.session_messages import SessionInbox, SessionMessage
from claude_bridge.store.spaces import SpaceStore
from claude_bridge.store.thread_control import ThreadControlStore
from claude_bridge.store.thread_members import ThreadMembers

log = get_logger("control")
DAY_MS = 86_400_000
SWEEP_INTERVAL = 3600.0

Renderer = Callable[[HookEvent, RenderContext], list[OutboundMessage]]
# What "mute" hides: the tool-call lines and their output. Approvals stay visible.
TOOL_NOISE = CATALOGUE.names(lambda kind: kind.muted)


class Control:
    def __init__(
        self,
        config: Config,
        db: Database,
        threads: ThreadStore,
        router: ThreadRouter,
        client: MatrixClient,
        permissions: Permissions,
        names: MatrixNames,
        config_dir: Path | None = None,
    ) -> None:
        options = config.bridge.control
        files = config.bridge.attachments
        self.files_dir = (config_dir or Path.cwd()) / Path(files.directory).expanduser()
        self.signals = Signals()
        inbox = SessionInbox(db)
        approval_store = ApprovalStore(db)
        members = ThreadMembers(db)
        self.receipts = Receipts(
            inbox, approval_store, threads, client, approval_timeout=options.approval_timeout
        )
        audit = AuditLog(db)
        approvals = Approvals(
            approval_store,
            self.signals,
            timeout=options.approval_timeout,
            on_settled=self.receipts.notify,
            attached=AttachedReads(inbox, approval_store, audit, enabled=files.allow_read),
        )
        self.parts = Parts(
            options=options,
            router=router,
            threads=threads,
            client=client,
            controls=ThreadControlStore(db),
            inbox=inbox,
            approval_store=approval_store,
            approvals=approvals,
            members=members,
            roles=Roles(permissions, members, names),
            audit=audit,
            signals=self.signals,
        )
        carrier = FileCarrier(inbox, self.files_dir, files.local_directory)
        self.queue = MessageQueue(inbox, options.message_budget, carrier)
        self.respond = Responder(
            options,
            self.parts.controls,
            self.queue,
            approvals,
            self.signals,
            on_delivered=self.receipts.notify,
        )
        self.runners = Runners(RunnerStore(db), RunnerJobStore(db), self.signals)
        self.typing = RunnerTyping(
            self.parts, self.runners, self.respond, carrier, self.receipts.notify
        )
        self.parts.offer_typing = self.typing.offer
        commands = CommandSet(options.command_prefix)
        info = InfoCommands(self.parts, commands)
        ThreadCommands(self.parts, commands)
        replies = RoomReplies(client)
        self.intake = AttachmentIntake(self.parts, replies, files, self.files_dir)
        self.file_requests = FileRequests(
            self.parts, replies, files, client.scrub, commands, FileRequestStore(db)
        )
        self.respond.offer_requests = self.file_requests.offer
        carrier.on_held = lambda message: self._note_held(replies, message)
        carrier.on_unfetched = lambda message: self._note_unfetched(replies, message)
        self.runner_rooms = RunnerRooms(self.parts, self.runners, replies)
        self.typing.on_stranded = self.runner_rooms.stranded
        RunnerCommands(self.parts, commands, self.runners, self.runner_rooms, info)
        self.handoff_expiry = HandoffExpiry(self.parts, replies)
        policies = RoomPolicyStore(db)
        check = RoomCheck(
            client,
            self.parts.roles,
            permissions,
            policies,
            config.bridge.permissions,
            self.parts.audit,
        )
        self.guard = RoomGuard(self.parts, check, policies, SpaceStore(db), info, replies)
        self.parts.recheck_room = check.thread_room
        self.room_sweep = RoomSweep(check, self.guard, threads, policies)
        self.handle = InboundHandler(
            self.parts, commands, info, replies, self.guard, intake=self.intake
        )
        self.keep_days = files.keep_days
        self._sweeper: asyncio.Task[None] | None = None

    async def _note_unfetched(self, replies: RoomReplies, message: SessionMessage) -> None:
        thread = await self.parts.threads.get(message.thread_id)
        text = (
            f"⚠️ {message.file_name} was handed to Claude Code's hook, but its host never "
            "fetched it: Claude was told of a file that isn't there. Send it again."
        )
        await replies.send(
            thread,
            message.room_id,
            f"{message.event_id}.unfetched",
            text,
            reply_to=message.event_id,
        )

    async def _note_held(self, replies: RoomReplies, message: SessionMessage) -> None:
        thread = await self.parts.threads.get(message.thread_id)
        if thread is not None:
            await replies.send(thread, message.room_id, message.event_id, held_note(message))

    def add_routes(self, server: HookServer) -> None:
        self.waiter = waiter = Waiter(
            self.parts.options,
            self.parts.threads,
            self.queue,
            self.respond,
            self.signals,
            server.token_name,
            self.receipts.notify,
            server.connections,
            is_local=server.access.is_local,
            runner_typed=self.typing.offer,
        )
        self.respond.connections = server.connections
        server.app.router.add_get(WAIT_PATH, waiter.handle)
        server.app.router.add_post(POLL_PATH, RunnerPoll(self.runners, server.access).handle)
        route = FileRoute(
            self.parts.threads,
            self.parts.inbox,
            self.files_dir,
            server.token_name,
            self.receipts.notify,
        )
        server.app.router.add_get(FILE_ROUTE, route.handle)
        server.app.router.add_post(REQUEST_ROUTE, self.file_requests.route(server.token_name))

    def renderer(self, render: Renderer) -> Renderer:
        """``render`` with tool calls switched off in muted threads, and a prompt the bridge
        typed into a runner session attributed to whoever wrote it."""
        muted = self.parts.muted
        author = self.typing.author

        def render_unless_muted(event: HookEvent, ctx: RenderContext) -> list[OutboundMessage]:
            if isinstance(event, UserPromptSubmit) and (by := author(ctx.thread_id, event.prompt)):
                ctx = dataclasses.replace(ctx, extra={**ctx.extra, PROMPT_BY: by})
            if ctx.thread_id in muted:
                base = mirror_options(ctx.mirror)
                quiet = {**base.events, **dict.fromkeys(TOOL_NOISE, False)}
                ctx = dataclasses.replace(ctx, mirror=base.model_copy(update={"events": quiet}))
            return render(event, ctx)

        return render_unless_muted

    async def _sweep_files(self) -> None:
        """Hourly: files of sessions ended or quiet for ``keep_days`` are deleted, the bridge's
        copies and what it wrote for local tokens."""
        while True:
            try:
                cutoff = now_ms() - self.keep_days * DAY_MS
                gone = await self.intake.prune(cutoff)
                local = self.queue.files.local_root
                gone += await asyncio.to_thread(host_files.prune, local, self.keep_days * 86_400)
                if gone:
                    log.info("deleted files past bridge.attachments.keep_days", count=gone)
            except Exception as e:
                log.warning("deleting old files failed; will try again", error=repr(e))
            await asyncio.sleep(SWEEP_INTERVAL)

    async def start(self) -> None:
        abandoned = await self.parts.approval_store.abandon_pending(
            "the bridge restarted before a decision"
        )
        if abandoned:
            log.info("permission requests left over from before a restart", count=abandoned)
        self.parts.muted |= await self.parts.controls.muted_threads()
        # From here on the hook path asks these before it queries (store/hints.py).
        await self.parts.controls.load_hint()
        await self.parts.inbox.load_hint()
        await self.receipts.start()
        await self.runners.load()
        await self.file_requests.load()
        await self.typing.load()
        self.typing.start()
        await self.guard.start()
        self._sweeper = asyncio.create_task(self._sweep_files(), name="attachments-sweep")
        self.handoff_expiry.start()

    def release(self) -> None:
        """End every held hook answer now (each answers ``{}``): the bridge is stopping."""
        self.signals.close()

    async def stop(self) -> None:
        self.release()
        self.queue.files.close()
        self.file_requests.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.room_sweep.stop()
        await self.handoff_expiry.stop()
        await self.typing.stop()
        await self.receipts.stop()
        await self.runners.drain()
