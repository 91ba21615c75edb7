"""A client whose host takes nothing, for the answers that must reach it (hooks/receipt.py)."""

from __future__ import annotations

import socket


def request_without_reading(port: int, request: bytes) -> socket.socket:
    """Send ``request`` from a client with the smallest receive buffer the kernel allows that
    never reads: the answer stays unacknowledged in the server's send queue, as to a laptop that
    was shut or behind a NAT entry that was dropped."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    sock.connect(("127.0.0.1", port))
    sock.sendall(request)
    return sock


def what_arrives(sock: socket.socket) -> bytes:
    """All the client can still read: it ends in a reset, or the end of the stream."""
    sock.settimeout(10)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return got
