"""``Control``: steering, built from the bridge's parts, handed to the composition root.

The bridge wires five things from it: ``respond`` (the hook server's answers), ``handle`` (an
inbound Matrix handler), ``add_routes`` (the background waiter's and the host runners' long-polls
on the hook server),
``renderer`` (so ``!claude mute`` takes effect in delivery) and ``room_sweep`` (the start-up
check of every room, started once the homeserver answers). ``release`` ends every held hook
answer with ``{}`` and must run before the hook server stops, or its shutdown waits for them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from mautrix.util.async_db import Database

from claude_bridge.config import Config
from claude_bridge.config.sections.mirror import mirror_options
from claude_bridge.control.approvals import Approvals
from claude_bridge.control.commands import CommandSet
from claude_bridge.control.handler import InboundHandler
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
from claude_bridge.control.runner_poll import POLL_PATH, RunnerPoll
from claude_bridge.control.runners import Runners
from claude_bridge.control.signals import Signals
from claude_bridge.control.thread_commands import ThreadCommands
from claude_bridge.control.waiter import WAIT_PATH, Waiter
from claude_bridge.events.catalogue import CATALOGUE
from claude_bridge.events.models import HookEvent
from claude_bridge.hooks.server import HookServer
from claude_bridge.ids import MatrixNames
from claude_bridge.log import get_logger
from claude_bridge.matrix.client import MatrixClient
from claude_bridge.permissions import Permissions
from claude_bridge.render.messages import OutboundMessage, RenderContext
from claude_bridge.router import ThreadRouter
from claude_bridge.store import ThreadStore
from claude_bridge.store.approvals import ApprovalStore
from claude_bridge.store.audit import AuditLog
from claude_bridge.store.room_policy import RoomPolicyStore
from claude_bridge.store.runner_jobs import RunnerJobStore
from claude_bridge.store.runners import RunnerStore
from claude_bridge.store.session_messages import SessionInbox
from claude_bridge.store.spaces import SpaceStore
from claude_bridge.store.thread_control import ThreadControlStore
from claude_bridge.store.thread_members import ThreadMembers

log = get_logger("control")

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
    ) -> None:
        options = config.bridge.control
        self.signals = Signals()
        inbox = SessionInbox(db)
        approval_store = ApprovalStore(db)
        members = ThreadMembers(db)
        self.receipts = Receipts(
            inbox, approval_store, threads, client, approval_timeout=options.approval_timeout
        )
        approvals = Approvals(
            approval_store,
            self.signals,
            timeout=options.approval_timeout,
            on_settled=self.receipts.notify,
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
            audit=AuditLog(db),
            signals=self.signals,
        )
        self.queue = MessageQueue(inbox, options.message_budget)
        self.respond = Responder(
            options,
            self.parts.controls,
            self.queue,
            approvals,
            self.signals,
            on_delivered=self.receipts.notify,
        )
        self.runners = Runners(RunnerStore(db), RunnerJobStore(db), self.signals)
        commands = CommandSet(options.command_prefix)
        info = InfoCommands(self.parts, commands)
        ThreadCommands(self.parts, commands)
        replies = RoomReplies(client)
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
        self.handle = InboundHandler(self.parts, commands, info, replies, self.guard)

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
        )
        self.respond.connections = server.connections
        server.app.router.add_get(WAIT_PATH, waiter.handle)
        server.app.router.add_post(POLL_PATH, RunnerPoll(self.runners, server.access).handle)

    def renderer(self, render: Renderer) -> Renderer:
        """``render`` with tool calls switched off in muted threads."""
        muted = self.parts.muted

        def render_unless_muted(event: HookEvent, ctx: RenderContext) -> list[OutboundMessage]:
            if ctx.thread_id in muted:
                base = mirror_options(ctx.mirror)
                quiet = {**base.events, **dict.fromkeys(TOOL_NOISE, False)}
                ctx = dataclasses.replace(ctx, mirror=base.model_copy(update={"events": quiet}))
            return render(event, ctx)

        return render_unless_muted

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
        await self.guard.start()

    def release(self) -> None:
        """End every held hook answer now (each answers ``{}``): the bridge is stopping."""
        self.signals.close()

    async def stop(self) -> None:
        self.release()
        await self.room_sweep.stop()
        await self.receipts.stop()
        await self.runners.drain()
