"""Connections the hook server holds open, counted against the file-descriptor limit.

Three kinds of request hold their connection for minutes: the background waiter's long-poll
(``GET /claude/v1/sessions/{id}/wait``), a ``PermissionRequest`` waiting for an operator, and a
Stop hook held in listen mode. Each is a socket, and a process has at most ``RLIMIT_NOFILE`` of
them. At start-up the bridge raises its soft limit to the hard limit (as far as the kernel
allows) and keeps a reserve for everything else (the database, connections to the homeserver,
hook requests that do not wait, ``/health``); the rest is the cap of held connections
(``hooks.max_held_connections`` lowers it). A request that would hold a connection beyond the
cap is answered 503 with ``Retry-After`` and nothing is stored; a Stop hook is not held (Claude
stops; the background waiter takes over). So the bridge runs out of held slots before it runs out
of descriptors, and goes on answering hooks and ``/health``.

Should descriptors run out anyway (many idle client connections), asyncio's accept loop logs
"socket.accept() out of system resource" and stops accepting for a second, then tries again;
the process goes on (``tests/e2e/test_fd_limits.py``).
"""

from __future__ import annotations

import resource
from collections.abc import Callable

from claude_bridge.log import get_logger

log = get_logger("hooks")

RETRY_AFTER = 30
"""Seconds a client refused for want of a slot is asked to wait."""
MIN_RESERVE, MAX_RESERVE = 64, 1024
"""Descriptors kept for all that is not held: an eighth of the limit, within these bounds."""
_SANE_MAX = 1 << 20
"""Where the hard limit is "unlimited", the most the soft limit is raised to (Linux's nr_open)."""


class NoSlot(Exception):
    """Every held-connection slot is taken."""

    def __init__(self, cap: int) -> None:
        super().__init__(
            f"the bridge holds {cap} connections open already (long-polls, permission requests "
            "and Stop hooks waiting), its limit (hooks.max_held_connections, or the process's "
            f"file-descriptor limit); retry in {RETRY_AFTER} s"
        )


def raise_fd_limit() -> tuple[int, int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` towards the hard one; (soft before, soft now, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, _SANE_MAX)
    now = soft
    while want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            now = want
            break
        except (ValueError, OSError):  # above fs.nr_open: try half-way
            want = soft + (want - soft) // 2
    return soft, now, hard


def reserve_for(limit: int) -> int:
    return max(MIN_RESERVE, min(MAX_RESERVE, limit // 8))


def cap_for(limit: int, configured: int) -> int:
    """Held connections allowed under a descriptor ``limit`` (0 configured: no lower cap)."""
    allowed = max(limit - reserve_for(limit), 0)
    return min(configured, allowed) if configured else allowed


class HeldConnections:
    """How many requests hold their connection right now, against a cap set at start-up."""

    def __init__(self, configured: int = 0) -> None:
        self.configured = configured
        self.cap = configured or 0  # 0: not started (no limit known yet), or unlimited
        self.held = 0
        self.refused = 0

    def start(self) -> None:
        """Raise the descriptor limit and log how many held connections it allows."""
        before, soft, hard = raise_fd_limit()
        self.cap = cap_for(soft, self.configured)
        log.info(
            "file-descriptor limit",
            soft_before=before,
            soft=soft,
            hard=hard,
            held_connections=self.cap,
            reserve=soft - cap_for(soft, 0),
        )
        if self.configured and self.cap < self.configured:
            log.warning(
                "hooks.max_held_connections is above what the file-descriptor limit allows; "
                "lowered (raise the hard limit: ulimit -Hn, LimitNOFILE=, docker --ulimit nofile=)",
                configured=self.configured,
                held_connections=self.cap,
            )

    def take(self) -> None:
        """Take a slot, or raise :class:`NoSlot`."""
        if self.cap and self.held >= self.cap:
            self.refused += 1
            raise NoSlot(self.cap)
        self.held += 1

    def try_take(self) -> bool:
        try:
            self.take()
        except NoSlot:
            return False
        return True

    def give_back(self) -> None:
        self.held = max(self.held - 1, 0)


def connection_check(transport: object | None) -> Callable[[], bool]:
    """Whether the client is still there, for a request's transport, as cheap as can be: the
    sweep calls it for every held answer (``request.transport`` is a property; the transport
    object stays the same for the life of the connection and says when it is closing)."""
    if transport is None:
        return lambda: False
    is_closing = transport.is_closing  # type: ignore[attr-defined]
    return lambda: not is_closing()
