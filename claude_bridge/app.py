"""The composition root: builds the parts from the config, starts them in order, stops them.

It wires; the parts do the work.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from claude_bridge.config import Config
from claude_bridge.delivery import Delivery
from claude_bridge.errors import ExitCode, FatalError
from claude_bridge.hooks.ingest import Ingest
from claude_bridge.hooks.server import HookServer
from claude_bridge.log import get_logger
from claude_bridge.matrix.appservice import BridgeAppService
from claude_bridge.matrix.client import MatrixClient
from claude_bridge.matrix.inbound import InboundProcessor
from claude_bridge.matrix.startup import check_appservice, wait_for_homeserver
from claude_bridge.permissions import Permissions
from claude_bridge.render import render_event
from claude_bridge.router import ThreadRouter
from claude_bridge.store import MatrixInbox, Outbox, ThreadStore, create_database

log = get_logger("app")


class Bridge:
    def __init__(self, config: Config, config_dir: Path) -> None:
        self.config = config
        self.db = create_database(config.database_url(config_dir))
        self.threads = ThreadStore(self.db)
        self.outbox = Outbox(self.db)
        self.inbox = MatrixInbox(self.db)
        self.permissions = Permissions(config.bridge.permissions)
        self.inbound = InboundProcessor(self.inbox, is_bridge_user=self.is_bridge_user)
        self.appservice = BridgeAppService(
            config,
            self.inbox,
            on_events=self.inbound.notify,
            query_alias=lambda alias: self.router.query_alias(alias),
            query_user=lambda user_id: self.router.query_user(user_id),
        )
        # The client needs the appservice's HTTP session, which exists once it has started.
        self.client: MatrixClient
        self.router: ThreadRouter
        self.delivery: Delivery
        self.hooks: HookServer

    def is_bridge_user(self, user_id: str) -> bool:
        localpart, _, domain = user_id[1:].partition(":")
        return domain == self.config.homeserver.domain and (
            localpart == self.config.appservice.bot_username
            or localpart.startswith(self.config.bridge.ghost_prefix)
        )

    async def start(self) -> None:
        try:
            await self.db.start()
        except Exception as e:
            raise FatalError(f"database {self.config.database!r}: {e}", ExitCode.DATABASE) from e
        await self.appservice.start(self.config.appservice.hostname, self.config.appservice.port)
        self.client = MatrixClient(
            self.appservice.http_session,
            self.config.homeserver.address,
            self.config.appservice.as_token,
            self.appservice.bot_mxid,
        )
        self.router = ThreadRouter(self.config, self.threads, self.client, self.permissions)
        self.delivery = Delivery(
            self.outbox,
            self.threads,
            self.router,
            self.client,
            render_event,
            mirror=self.config.bridge.mirror,
        )
        ingest = Ingest(self.db, self.threads, self.outbox, self.router, self.delivery.notify)
        self.hooks = HookServer(self.config.hooks, ingest)
        # Hooks are accepted (durably) even while the homeserver is still unreachable.
        await self.hooks.start()
        await wait_for_homeserver(self.client, self.config.homeserver.address)
        await check_appservice(self.client, self.config)
        await self.delivery.start()
        await self.inbound.start()
        self.appservice.ready = True
        log.info(
            "bridge ready",
            hooks=self.config.hooks.listen,
            appservice=self.config.appservice.address,
        )

    async def stop(self) -> None:
        self.appservice.ready = False
        if hasattr(self, "hooks"):
            await self.hooks.stop()
        if hasattr(self, "delivery"):
            await self.delivery.stop()
        await self.inbound.stop()
        await self.appservice.stop()
        await self.db.stop()
        log.info("bridge stopped")


async def run_bridge(config: Config, config_dir: Path) -> int:
    """Run until SIGTERM or SIGINT; then finish in-flight work and exit."""
    bridge = Bridge(config, config_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await bridge.start()
    except FatalError as e:
        log.error(str(e))
        await bridge.stop()
        return int(e.exit_code)
    await stop.wait()
    log.info("shutting down")
    await bridge.stop()
    return 0
