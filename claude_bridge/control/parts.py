"""The pieces steering works with, built once by ``Control`` and shared by its modules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from claude_bridge.config.sections.control import ControlConfig
from claude_bridge.control.approvals import Approvals
from claude_bridge.control.roles import Roles
from claude_bridge.control.signals import Signals
from claude_bridge.matrix.client import MatrixClient
from claude_bridge.router import ThreadRouter
from claude_bridge.store import Thread, ThreadStore
from claude_bridge.store.approvals import ApprovalStore
from claude_bridge.store.audit import AuditLog
from claude_bridge.store.session_messages import SessionInbox
from claude_bridge.store.thread_control import ThreadControlStore
from claude_bridge.store.thread_members import ThreadMembers


@dataclass
class Parts:
    options: ControlConfig
    router: ThreadRouter
    threads: ThreadStore
    client: MatrixClient
    controls: ThreadControlStore
    inbox: SessionInbox
    approval_store: ApprovalStore
    approvals: Approvals
    members: ThreadMembers
    roles: Roles
    audit: AuditLog
    signals: Signals
    muted: set[str] = field(default_factory=set)
    """Threads whose tool calls are not mirrored (kept in step with ``thread_control.muted``)."""
    recheck_room: Callable[[Thread], Awaitable[object]] | None = None
    """Brings a thread's room in line with who has which level there (``room_check``)."""
    offer_typing: Callable[[str], Awaitable[bool]] | None = None
    """Hands a queued message of an idle runner session to its runner (``runner_typing``)."""
