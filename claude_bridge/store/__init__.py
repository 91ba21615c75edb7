"""Durable state: one ``Database`` and one small repository per table."""

from __future__ import annotations

from claude_bridge.store.database import create_database, now_ms
from claude_bridge.store.matrix_events import MatrixEventStore
from claude_bridge.store.outbox import Outbox, PendingEvent
from claude_bridge.store.threads import Thread, ThreadStore

__all__ = [
    "MatrixEventStore",
    "Outbox",
    "PendingEvent",
    "Thread",
    "ThreadStore",
    "create_database",
    "now_ms",
]
