"""Durable state: one ``Database`` and one small repository per table."""

from __future__ import annotations

from claude_bridge.store.database import create_database, now_ms
from claude_bridge.store.hook_event_log import HookEventLog
from claude_bridge.store.matrix_events import MatrixEventStore
from claude_bridge.store.outbox import Outbox, PendingEvent
from claude_bridge.store.sent_events import SentEvents
from claude_bridge.store.threads import Thread, ThreadStore

__all__ = [
    "HookEventLog",
    "MatrixEventStore",
    "Outbox",
    "PendingEvent",
    "SentEvents",
    "Thread",
    "ThreadStore",
    "create_database",
    "now_ms",
]
