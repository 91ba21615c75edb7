"""What the composition root attaches for operators and tools: the health report (``/health`` and
mautrix's probes), ``/metrics`` and the threads API on the hook server, and retention."""

from __future__ import annotations

from aiohttp import web
from mautrix.util.async_db import Database

from claude_bridge.api import ThreadsAPI, register_routes
from claude_bridge.api.handoff_limits import HandoffLimits
from claude_bridge.config.sections.bridge import BridgeConfig
from claude_bridge.history import ThreadHistory
from claude_bridge.matrix.client import MatrixClient
from claude_bridge.metrics import MetricsEndpoint
from claude_bridge.ops.health import DeliveryStats, HealthReporter, Probes
from claude_bridge.retention import RetentionPruner
from claude_bridge.router import ThreadRouter
from claude_bridge.store import MatrixEventStore, Outbox, ThreadStore
from claude_bridge.store.session_messages import SessionInbox
from claude_bridge.token_access import TokenAccess


class Operations:
    def __init__(
        self,
        config: BridgeConfig,
        db: Database,
        *,
        threads: ThreadStore,
        outbox: Outbox,
        matrix_events: MatrixEventStore,
        probes: Probes,
        client: MatrixClient,
        router: ThreadRouter,
        access: TokenAccess,
        delivery: DeliveryStats,
    ) -> None:
        self.delivery = delivery
        self.health = HealthReporter(db, outbox, matrix_events, probes)
        self.health.watch_homeserver(client)
        self.metrics = MetricsEndpoint([self.health.refresh_metrics])
        self.api = ThreadsAPI(
            threads=threads,
            history=ThreadHistory(db, client.scrub),
            router=router,
            client=client,
            access=access,
            scrub=client.scrub,
            handoffs=config.control.handoffs,
            limits=HandoffLimits(SessionInbox(db), config.control),
        )
        self.retention = RetentionPruner(db, config.retention) if config.retention else None

    def add_routes(self, app: web.Application) -> None:
        """``/metrics`` and the threads API, on the hook server (before it starts)."""
        app.router.add_get("/metrics", self.metrics.handle)
        register_routes(app, self.api)

    def start(self) -> None:
        """The start-up checks passed: ready, and the background checks and pruning run."""
        self.health.mark_started(self.delivery)
        self.health.start_monitor()
        if self.retention:
            self.retention.start()

    async def stop(self) -> None:
        await self.health.stop()
        if self.retention:
            await self.retention.stop()
