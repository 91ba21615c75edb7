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
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from claude_bridge.log import get_logger

if TYPE_CHECKING:
    from aiohttp import web

log = get_logger("hooks")

RETRY_AFTER = 30
"""Seconds a client refused for want of a slot is asked to wait."""
MIN_RESERVE, MAX_RESERVE = 64, 1024
"""Descriptors kept for all that is not held: an eighth of the limit, within these bounds."""
_SANE_MAX = 1 << 20
"""Where the hard limit is "unlimited", the most the soft limit is raised to (Linux's nr_open)."""


KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_PROBES = 60, 15, 4
"""TCP keepalive on a held connection: a probe after 60 s without traffic, then every 15 s while
unanswered, given up after 4. A held poll sends nothing for minutes; the probes keep NAT
entries and TCP load balancers' idle timers alive through it, and tell the bridge within about
two minutes that a peer vanished without a FIN (its answer would go nowhere)."""


def tcp_socket(transport: object) -> socket.socket | None:
    """``transport``'s TCP socket; None where it has none (a Unix socket, a closed transport)."""
    get_extra_info = getattr(transport, "get_extra_info", None)
    sock = get_extra_info("socket") if get_extra_info is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    return sock


def keep_alive(transport: object) -> bool:
    """Turn TCP keepalive on for ``transport``'s socket; False where it has none (a Unix
    socket, a closed transport)."""
    sock = tcp_socket(transport)
    if sock is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in (("TCP_KEEPIDLE", KEEPALIVE_IDLE),
                              ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
                              ("TCP_KEEPCNT", KEEPALIVE_PROBES)):  # fmt: skip
            if hasattr(socket, option):  # Linux has all three; macOS only the last two
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
    except OSError:
        return False
    return True


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
        self.hangups = Hangups()

    def check(self, request: web.BaseRequest) -> Callable[[], bool]:
        """``connection_check`` for a request this server holds."""
        return connection_check(request.transport, request.protocol, self.hangups)

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


class Hangups:
    """Tells held answers the moment their client goes away.

    aiohttp does not cancel a handler whose client left, but its server's ``connection_lost``
    runs for every connection that closes: :meth:`install` wraps it, and a held answer
    :meth:`watch`-es its connection (``request.protocol``) instead of being looked at by the
    sweep (``control/signals.py``), which at 11,000 held was over a quarter of an idle bridge's
    CPU. Not
    installed (a server it cannot wrap, or none started, as in unit tests), the sweep looks.
    """

    def __init__(self) -> None:
        self._watching: dict[object, list[Callable[[], None]]] = {}
        self.installed = False

    def install(self, server: object) -> bool:
        """Wrap ``server.connection_lost`` (an ``aiohttp.web.Server``, ``AppRunner.server``)."""
        lost = getattr(server, "connection_lost", None)
        if lost is None:
            return False

        def connection_lost(handler: object, exc: BaseException | None = None) -> None:
            try:
                lost(handler, exc)
            finally:
                for callback in self._watching.pop(handler, ()):
                    callback()

        try:
            server.connection_lost = connection_lost  # type: ignore[attr-defined]
        except AttributeError:  # a server class with __slots__: the sweep looks instead
            log.warning("cannot watch connections close; a sweep looks at held answers' clients")
            return False
        self.installed = True
        return True

    def watch(self, connection: object, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` once when ``connection`` closes; returns the undo."""
        callbacks = self._watching.setdefault(connection, [])
        callbacks.append(callback)

        def unwatch() -> None:
            if callback in callbacks:
                callbacks.remove(callback)
            if not callbacks and self._watching.get(connection) is callbacks:
                del self._watching[connection]

        return unwatch

    def __len__(self) -> int:
        return len(self._watching)


class Connected:
    """Whether a held request's client is still there (call it), as cheap as can be
    (``request.transport`` is a property; the transport object stays the same for the life of
    the connection and says when it is closing), and :meth:`watch` to be told when it goes."""

    __slots__ = ("_connection", "_hangups", "_is_closing", "_transport")

    def __init__(self, transport: object, connection: object, hangups: Hangups | None) -> None:
        self._is_closing: Callable[[], bool] = transport.is_closing  # type: ignore[attr-defined]
        self._transport: object | None = transport
        self._connection = connection
        self._hangups = hangups

    def __call__(self) -> bool:
        return not self._is_closing()

    def watch(self, callback: Callable[[], None]) -> Callable[[], None] | None:
        """``callback`` once the client goes (and the undo), or None where nobody would tell:
        then the caller looks itself. Watched means held: the connection gets TCP keepalive."""
        if self._transport is not None:  # once per request, however often it waits
            keep_alive(self._transport)
            self._transport = None
        if self._hangups is None or not self._hangups.installed or self._connection is None:
            return None
        return self._hangups.watch(self._connection, callback)


def connection_check(
    transport: object | None, connection: object | None = None, hangups: Hangups | None = None
) -> Callable[[], bool]:
    """Whether the client is still there, for a request's transport; with its ``connection``
    (``request.protocol``) and the server's :class:`Hangups`, it can also tell when it goes."""
    if transport is None:
        return lambda: False
    return Connected(transport, connection, hangups)
