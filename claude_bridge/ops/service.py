"""The service-side parts the composition root attaches to a bridge: ``/health``, ``/metrics``,
the threads API on the hook server, and retention. Kept here so ``app.py`` needs three lines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from claude_bridge.api import ThreadsAPI, register_routes
from claude_bridge.history import ThreadHistory
from claude_bridge.metrics import MetricsEndpoint, hook_metrics_middleware
from claude_bridge.ops.health import HealthReporter
from claude_bridge.retention import RetentionPruner

if TYPE_CHECKING:
    from claude_bridge.app import Bridge


class Operations:
    def __init__(self, bridge: Bridge) -> None:
        """Call after the hook server is built and before it starts (routes freeze at start)."""
        self.bridge = bridge
        self.health = HealthReporter(
            bridge.db, bridge.outbox, bridge.matrix_events, bridge.appservice
        )
        self.health.watch_homeserver(bridge.client)
        self.metrics = MetricsEndpoint([self.health.refresh_metrics])
        app = bridge.hooks.app
        bridge.hooks.health = self.health.report
        app.middlewares.append(hook_metrics_middleware)
        app.router.add_get("/metrics", self.metrics.handle)
        register_routes(
            app,
            ThreadsAPI(
                threads=bridge.threads,
                history=ThreadHistory(bridge.db, bridge.client.scrub),
                router=bridge.router,
                client=bridge.client,
                access=bridge.access,
                scrub=bridge.client.scrub,
                handoffs=bridge.config.bridge.control.handoffs,
            ),
        )
        days = bridge.config.bridge.retention
        self.retention = RetentionPruner(bridge.db, days) if days else None

    def started(self) -> None:
        """The start-up checks passed."""
        self.health.mark_started(self.bridge.delivery)
        self.bridge.appservice.ready = True
        self.health.start_monitor()
        if self.retention:
            self.retention.start()

    async def stop(self) -> None:
        await self.health.stop()
        if self.retention:
            await self.retention.stop()
