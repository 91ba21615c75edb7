"""The composition root: builds the parts from the config, starts them in order, stops them.

It wires; the parts do the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from claude_bridge.catchup import CatchUp, with_catchup_marker
from claude_bridge.config import Config
from claude_bridge.control.service import Control
from claude_bridge.delivery import Delivery
from claude_bridge.errors import ExitCode, FatalError
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
from claude_bridge.router import ThreadRouter
from claude_bridge.spaces import ProjectSpaces
from claude_bridge.store import MatrixEventStore, Outbox, ThreadStore, create_database
from claude_bridge.store.checkpoints import WalCheckpoints
from claude_bridge.store.lock import leader_lock
from claude_bridge.store.spaces import SpaceStore
from claude_bridge.token_access import TokenAccess

log = get_logger("app")


class Bridge:
    def __init__(self, config: Config, config_dir: Path) -> None:
        self.config = config
        scrub_logs_with(outgoing_scrubber(config).value)
        self.db = create_database(config.database_url(config_dir))
        self.checkpoints = WalCheckpoints(self.db)
        self.lock = leader_lock(config.database_url(config_dir))
        self.threads = ThreadStore(self.db)
        self.outbox = Outbox(self.db, group_commit=config.hooks.group_commit)
        self.matrix_events = MatrixEventStore(self.db)
        self.permissions = Permissions(config.bridge.permissions)
        self.access = TokenAccess(config.hooks)
        echoes = EchoFilter(self.is_bridge_user)
        self.inbound = InboundProcessor(self.matrix_events, echoes=echoes)
        self.appservice = BridgeAppService(
            config,
            self.matrix_events,
            on_events=self.inbound.notify,
            query_alias=lambda alias: self.router.query_alias(alias),
            query_user=lambda user_id: self.router.query_user(user_id),
            echoes=echoes,
            on_store_failure=lambda: self.recovery.transaction_failed(),
        )
        # The client needs the appservice's HTTP session, which exists once it has started.
        self.client: MatrixClient
        self.router: ThreadRouter
        self.delivery: Delivery
        self.hooks: HookServer
        self.recovery: RecoveryWatch

    def is_bridge_user(self, user_id: str) -> bool:
        localpart, _, domain = user_id[1:].partition(":")
        return domain == self.config.homeserver.domain and (
            localpart == self.config.appservice.bot_username
            or localpart.startswith(self.config.bridge.ghost_prefix)
        )

    async def start(self) -> None:
        # One active bridge per database. A second process waits here, before it migrates the
        # schema or binds a port (its hook and appservice ports are the active one's), and takes
        # over when the active one dies.
        try:
            await self.lock.acquire()
        except Exception as e:
            raise FatalError(f"database {self.config.database!r}: {e}", ExitCode.DATABASE) from e
        try:
            await self.db.start()
            await settle_owners(self.threads, self.access)  # before any hook: renamed tokens
        except Exception as e:
            raise FatalError(f"database {self.config.database!r}: {e}", ExitCode.DATABASE) from e
        self.checkpoints.start()
        await self.appservice.start(self.config.appservice.hostname, self.config.appservice.port)
        self.client = MatrixClient(
            self.appservice.http_session,
            self.config.homeserver.address,
            self.config.appservice.as_token,
            self.appservice.bot_mxid,
            timeout=self.config.homeserver.request_timeout,
            scrub=outgoing_scrubber(self.config),
        )
        self.recovery = RecoveryWatch(
            self.client,
            self.config.appservice.id,
            probe_db=lambda: self.db.fetchval("SELECT 1"),
            on_recovered=self._resume,
        )
        spaces = ProjectSpaces(
            SpaceStore(self.db),
            self.client,
            self.permissions,
            bot_mxid=self.appservice.bot_mxid,
            domain=self.config.homeserver.domain,
        )
        self.router = ThreadRouter(self.config, self.threads, self.client, self.permissions, spaces)
        self.control = Control(
            self.config,
            self.db,
            self.threads,
            self.router,
            self.client,
            self.permissions,
            self.is_bridge_user,
        )
        self.delivery = Delivery(
            self.outbox,
            self.threads,
            self.router,
            self.client,
            self.control.renderer(with_catchup_marker(render_event)),
            mirror=self.config.bridge.mirror,
            on_failure=self.recovery.failed,
        )
        ingest = Ingest(
            self.db,
            self.threads,
            self.outbox,
            self.router,
            self.delivery.notify,
            access=self.access,
            new_threads_per_minute=self.config.hooks.new_threads_per_minute,
            catchup=CatchUp(self.config.hooks.catchup, self.db),
        )
        self.hooks = HookServer(
            self.config.hooks, ingest, respond=self.control.respond, access=self.access
        )
        self.control.add_routes(self.hooks)
        self.inbound.register(self.control.handle)
        self.ops = Operations(self)  # /health, /metrics, the threads API, retention
        await self.control.start()
        # Hooks are accepted (durably) even while the homeserver is still unreachable.
        await self.hooks.start()
        await wait_for_homeserver(self.client, self.config.homeserver.address)
        await check_appservice(self.client, self.config)
        await self.recovery.start()
        await self.delivery.start()
        await self.inbound.start()
        await self.control.room_sweep.start()
        self.ops.started()
        # What start-up built (modules, config, models) lives as long as the process: frozen,
        # it is no longer walked by every full collection, a pause of 20+ ms that hook requests
        # would wait out.
        gc.collect()
        gc.freeze()
        log.info(
            "bridge ready",
            hooks=self.config.hooks.listen,
            appservice=self.config.appservice.address,
        )

    def _resume(self) -> None:
        self.delivery.resume()
        self.inbound.notify()

    async def stop(self) -> None:
        self.appservice.ready = False
        if hasattr(self, "ops"):
            await self.ops.stop()
        if hasattr(self, "control"):
            self.control.release()  # held hook answers end now, or the server waits for them
        if hasattr(self, "hooks"):
            await self.hooks.stop()
        if hasattr(self, "recovery"):
            await self.recovery.stop()
        if hasattr(self, "delivery"):
            await self.delivery.stop()
        if hasattr(self, "control"):
            await self.control.stop()
        await self.inbound.stop()
        if hasattr(self.appservice, "runner"):  # mautrix sets it in start() only
            await self.appservice.stop()
        await self.checkpoints.stop()
        await self.outbox.close()
        await self.db.stop()
        await self.lock.release()
        log.info("bridge stopped")


async def run_bridge(config: Config, config_dir: Path) -> int:
    """Run until SIGTERM or SIGINT; then finish in-flight work and exit."""
    bridge = Bridge(config, config_dir)
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
