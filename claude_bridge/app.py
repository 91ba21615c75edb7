"""The composition root: :func:`build` wires the parts from the config; :class:`Bridge` starts
them in order and stops them in reverse.

It wires; the parts do the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mautrix.util.async_db import Database

from claude_bridge.catchup import CatchUp, with_catchup_marker
from claude_bridge.collector import QuietCollector
from claude_bridge.config import Config
from claude_bridge.control.service import Control
from claude_bridge.delivery import Delivery
from claude_bridge.errors import ExitCode, FatalError
from claude_bridge.event_loop import loop_name
from claude_bridge.hooks.ingest import Ingest
from claude_bridge.hooks.server import HookServer
from claude_bridge.log import get_logger, scrub_logs_with
from claude_bridge.matrix.appservice import BridgeAppService
from claude_bridge.matrix.client import MatrixClient
from claude_bridge.matrix.echo import EchoFilter
from claude_bridge.matrix.inbound import InboundProcessor
from claude_bridge.matrix.outgoing import outgoing_scrubber
from claude_bridge.matrix.recovery import RecoveryWatch
from claude_bridge.matrix.startup import check_appservice, wait_for_homeserver
from claude_bridge.ops.service import Operations
from claude_bridge.ownership import settle_owners
from claude_bridge.permissions import Permissions
from claude_bridge.render import render_event
from claude_bridge.render.room_status import with_room_status
from claude_bridge.router import ThreadRouter
from claude_bridge.spaces import ProjectSpaces
from claude_bridge.store import MatrixEventStore, Outbox, ThreadStore, create_database
from claude_bridge.store.checkpoints import WalCheckpoints
from claude_bridge.store.database import ping
from claude_bridge.store.lock import LeaderLock, leader_lock
from claude_bridge.store.spaces import SpaceStore
from claude_bridge.token_access import TokenAccess

log = get_logger("app")


@dataclass
class Bridge:
    """The parts of one bridge process, as :func:`build` wired them, and their start and stop."""

    config: Config
    lock: LeaderLock
    db: Database
    checkpoints: WalCheckpoints
    threads: ThreadStore
    outbox: Outbox
    matrix_events: MatrixEventStore
    permissions: Permissions
    access: TokenAccess
    appservice: BridgeAppService
    inbound: InboundProcessor
    client: MatrixClient
    recovery: RecoveryWatch
    router: ThreadRouter
    control: Control
    delivery: Delivery
    hooks: HookServer
    ops: Operations
    collector: QuietCollector = field(default_factory=QuietCollector)
    _running: contextlib.AsyncExitStack = field(
        default_factory=contextlib.AsyncExitStack, repr=False
    )

    async def start(self) -> None:
        """Start the parts in order. Each part's stop goes on the stack just before it starts
        (every stop is safe on a part that did not, or only half, start), so :meth:`stop` undoes
        what started, in reverse, after a failed or cancelled start too."""
        config, running = self.config, self._running
        # One active bridge per database. A second process waits here, before it migrates the
        # schema or binds a port (its hook and appservice ports are the active one's), and takes
        # over when the active one dies.
        running.push_async_callback(self.lock.release)
        await self._database(self.lock.acquire())
        running.push_async_callback(self.db.stop)
        running.push_async_callback(self.outbox.close)
        await self._database(self.db.start())
        await self._database(settle_owners(self.threads, self.access))  # renamed tokens, first
        running.push_async_callback(self.checkpoints.stop)
        self.checkpoints.start()
        running.push_async_callback(self.appservice.stop)
        await self.appservice.start(config.appservice.hostname, config.appservice.port)
        running.push_async_callback(self.control.stop)
        await self.control.start()
        running.push_async_callback(self.hooks.stop)
        running.callback(self.control.release)  # held hook answers end, or the server waits
        # Hooks are accepted (durably) even while the homeserver is still unreachable.
        await self.hooks.start()
        await wait_for_homeserver(self.client, config.homeserver.address)
        await check_appservice(self.client, config)
        for part in (self.recovery, self.delivery, self.inbound):
            running.push_async_callback(part.stop)
            await part.start()
        await self.control.room_sweep.start()  # control.stop stops it
        # On the way down the bridge first stops taking work, as clients see it: not ready, held
        # hook answers ended, the hook listener closed; then the parts stop in reverse.
        running.push_async_callback(self.hooks.stop)
        running.callback(self.control.release)
        running.push_async_callback(self.ops.stop)
        self.ops.start()
        # What start-up built (modules, config, models) lives as long as the process: frozen,
        # it is no longer walked by every full collection, a pause of 20+ ms that hook requests
        # would wait out.
        gc.collect()
        gc.freeze()
        # From here the older generations are collected at quiet moments (collector.py).
        running.push_async_callback(self.collector.stop)
        self.collector.start()
        log.info(
            "bridge ready",
            hooks=config.hooks.listen,
            appservice=config.appservice.address,
            event_loop=loop_name(asyncio.get_running_loop()),
        )

    async def _database(self, step: Awaitable[Any]) -> None:
        try:
            await step
        except Exception as e:
            raise FatalError(f"database {self.config.database!r}: {e}", ExitCode.DATABASE) from e

    async def stop(self) -> None:
        await self._running.aclose()
        log.info("bridge stopped")


def build(config: Config, config_dir: Path) -> Bridge:
    """Every part, wired; nothing started yet (no connection, listener or task)."""
    scrub_logs_with(outgoing_scrubber(config).value)
    url = config.database_url(config_dir)
    db = create_database(url)
    threads = ThreadStore(db)
    outbox = Outbox(db, group_commit=config.hooks.group_commit)
    matrix_events = MatrixEventStore(db)
    permissions = Permissions(config.bridge.permissions, config.bridge.launch)
    access = TokenAccess(config.hooks)
    names = config.matrix_names()
    echoes = EchoFilter(names)
    inbound = InboundProcessor(matrix_events, echoes=echoes)
    # The appservice asks the router (aliases, users) and tells the recovery watch (a failed
    # transaction); both need the client, which needs the appservice's session: built below.
    appservice = BridgeAppService(
        config,
        matrix_events,
        on_events=inbound.notify,
        query_alias=lambda alias: router.query_alias(alias),
        query_user=lambda user_id: router.query_user(user_id),
        echoes=echoes,
        on_store_failure=lambda: recovery.transaction_failed(),
    )
    client = MatrixClient(
        lambda: appservice.http_session,
        config.homeserver.address,
        config.appservice.as_token,
        appservice.bot_mxid,
        timeout=config.homeserver.request_timeout,
        scrub=outgoing_scrubber(config),
    )

    def resume() -> None:  # the homeserver is back: retries and waiting Matrix events go now
        delivery.resume()
        inbound.notify()

    recovery = RecoveryWatch(
        client, config.appservice.id, probe_db=lambda: ping(db), on_recovered=resume
    )
    spaces = ProjectSpaces(
        SpaceStore(db),
        client,
        permissions,
        bot_mxid=appservice.bot_mxid,
        domain=config.homeserver.domain,
    )
    router = ThreadRouter(config, names, threads, client, permissions, spaces)
    control = Control(config, db, threads, router, client, permissions, names, config_dir)
    delivery = Delivery(
        outbox,
        threads,
        router,
        client,
        control.renderer(with_catchup_marker(with_room_status(render_event))),
        mirror=config.bridge.mirror,
        on_failure=recovery.failed,
    )
    control.receipts.show_denied = delivery.denials.show  # a call denied here: mark its line
    delivery.contexts.attached = control.parts.approvals.attached  # allowed at once: no ping
    ingest = Ingest(
        db,
        threads,
        outbox,
        router,
        delivery.notify,
        access=access,
        new_threads_per_minute=config.hooks.new_threads_per_minute,
        catchup=CatchUp(config.hooks.catchup, db),
    )
    ops = Operations(
        config.bridge,
        db,
        threads=threads,
        outbox=outbox,
        matrix_events=matrix_events,
        probes=appservice,
        client=client,
        router=router,
        access=access,
        delivery=delivery,
    )
    hooks = HookServer(
        config.hooks,
        ingest,
        respond=control.respond,
        health=ops.health.report,
        access=access,
        scrub=outgoing_scrubber(config),
    )
    control.add_routes(hooks)  # the background waiter's long-poll
    ops.add_routes(hooks.app)  # /metrics, the threads API
    inbound.register(control.handle)
    return Bridge(
        config=config,
        lock=leader_lock(url),
        db=db,
        checkpoints=WalCheckpoints(db),
        threads=threads,
        outbox=outbox,
        matrix_events=matrix_events,
        permissions=permissions,
        access=access,
        appservice=appservice,
        inbound=inbound,
        client=client,
        recovery=recovery,
        router=router,
        control=control,
        delivery=delivery,
        hooks=hooks,
        ops=ops,
    )


async def run_bridge(config: Config, config_dir: Path) -> int:
    """Run until SIGTERM or SIGINT; then finish in-flight work and exit."""
    bridge = build(config, config_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        # A standby waits inside start() for the leader lock: a signal must end that wait too.
        started = await _unless(stop, bridge.start())
    except FatalError as e:
        log.error(str(e))
        await bridge.stop()
        return int(e.exit_code)
    code = ExitCode.OK
    if started and await _unless(stop, bridge.lock.lost.wait()):
        log.error("another bridge process holds the leader lock now; stopping")
        code = ExitCode.DATABASE
    log.info("shutting down")
    await bridge.stop()
    return int(code)


async def _unless(stop: asyncio.Event, work: Awaitable[Any]) -> bool:
    """Await ``work`` unless ``stop`` is set first (then cancel it); True if ``work`` finished."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if task.done():
        task.result()  # re-raise what start() raised
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False
