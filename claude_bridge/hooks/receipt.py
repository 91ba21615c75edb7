"""Whether the client's host took an answer: its TCP stack acknowledged every byte of it.

A held poll's client can vanish without a word (a laptop shut, a NAT entry dropped): the
bridge's answer then goes into the socket's send queue and nowhere else, while TCP keepalive
(``held.py``) would have told only within minutes. For an answer that carries an operator's
messages that would lose them: they are claimed as delivered. :class:`AnswerReceipt` watches
the socket's send queue (Linux's ``SIOCOUTQ``: bytes written and not yet acknowledged by the
peer) after the answer is written. Empty, the peer's kernel has the answer; still full after
:data:`TAKEN_WITHIN`, the connection is reset (nothing of the answer arrives late) and the
caller puts the messages back in their queue (:func:`answer_taken`).

Where the queue cannot be read (not Linux, not TCP) the answer counts as taken, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from claude_bridge import metrics
from claude_bridge.hooks.held import tcp_socket
from claude_bridge.log import get_logger

log = get_logger("hooks")

TAKEN_WITHIN = 20.0
"""Seconds a peer has to acknowledge an answer: many round trips, even on a poor mobile link,
with TCP's retransmissions in between."""
_FIRST_LOOK, _LONGEST_LOOK = 0.002, 0.25
_SIOCOUTQ = 0x5411  # TIOCOUTQ: on a TCP socket, bytes not yet acknowledged by the peer
_TCP_CLOSE = 7  # tcp_info.tcpi_state after a reset or a timeout


class AnswerReceipt:
    """Made before the answer is written (it keeps its own descriptor of the socket, so a
    client that reads and closes at once still leaves something to ask); :meth:`taken` after."""

    def __init__(self, transport: object) -> None:
        self._transport = transport
        self._sock: socket.socket | None = None
        sock = tcp_socket(transport) if sys.platform == "linux" else None
        if sock is None:
            return
        with contextlib.suppress(OSError):
            self._sock = socket.socket(fileno=os.dup(sock.fileno()))

    async def taken(self, within: float = TAKEN_WITHIN) -> bool:
        """Whether the peer acknowledged everything written, within ``within`` seconds. Not
        taken, the connection is reset. Always lets go of its descriptor."""
        sock, self._sock = self._sock, None
        if sock is None:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        pause = _FIRST_LOOK
        try:
            while True:
                unacknowledged, state = _send_queue(sock)
                if state == _TCP_CLOSE:  # reset, or given up on: what it had got is unknown
                    return unacknowledged == 0 and not sock.getsockopt(
                        socket.SOL_SOCKET, socket.SO_ERROR
                    )
                if unacknowledged == 0 and not _buffered(self._transport):
                    return True
                if loop.time() >= deadline:
                    self._reset(sock)
                    return False
                await asyncio.sleep(min(pause, max(deadline - loop.time(), 0.0)))
                pause = min(pause * 2, _LONGEST_LOOK)
        except OSError:
            return True  # the queue cannot be read here: as before, the answer counts as taken
        finally:
            sock.close()

    def _reset(self, sock: socket.socket) -> None:
        """Close with a reset, dropping what is queued: none of the answer may arrive later,
        once its messages went back to the queue for another answer. (The reset goes when the
        last descriptor of the socket closes: the server's, aborted here, and ours.)"""
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        abort = getattr(self._transport, "abort", None)
        if abort is not None:
            abort()


def _send_queue(sock: socket.socket) -> tuple[int, int]:
    """(bytes not yet acknowledged, TCP state) of ``sock``."""
    (unacknowledged,) = struct.unpack("i", fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0" * 4))
    state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
    return int(unacknowledged), int(state)


def _buffered(transport: object) -> int:
    """Bytes the event loop holds for the socket, not yet handed to the kernel."""
    size = getattr(transport, "get_write_buffer_size", None)
    return int(size()) if size is not None else 0


async def answer_taken(
    request: web.BaseRequest,
    response: web.StreamResponse,
    untaken: Sequence[Callable[[], Awaitable[None]]],
    within: float = TAKEN_WITHIN,
) -> bool:
    """Write ``response`` now; where it carried something that must not be lost (``untaken``
    holds how to take each back), wait until the peer took it, or run ``untaken``. Whether it
    was taken."""
    if not untaken:
        return True  # aiohttp writes it after the handler, as any answer
    receipt = AnswerReceipt(request.transport)
    await response.prepare(request)
    await response.write_eof()
    request[metrics.HOOK_ANSWERED_AT] = time.perf_counter()
    if await receipt.taken(within):
        return True
    await take_back_all(untaken)
    return False


async def take_back_all(untaken: Sequence[Callable[[], Awaitable[None]]]) -> None:
    """Take back what an answer carried, each part whatever another's failure."""
    for take_back in untaken:
        try:
            await take_back()
        except Exception:
            log.exception("taking back what an answer carried failed")
