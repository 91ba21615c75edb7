"""The cap of held connections (``hooks/held.py``): what a descriptor limit allows, and the count."""

from __future__ import annotations

import resource
import socket

import pytest

from claude_bridge.hooks.held import (
    KEEPALIVE_IDLE,
    MAX_RESERVE,
    MIN_RESERVE,
    HeldConnections,
    NoSlot,
    cap_for,
    keep_alive,
    raise_fd_limit,
    reserve_for,
)


def test_the_reserve_is_an_eighth_of_the_limit_within_bounds() -> None:
    assert reserve_for(256) == MIN_RESERVE
    assert reserve_for(4096) == 512
    assert reserve_for(1_048_576) == MAX_RESERVE
    assert cap_for(20_000, 0) == 20_000 - 1024
    assert cap_for(1024, 0) == 1024 - 128


def test_a_configured_cap_may_lower_but_never_raise_it() -> None:
    assert cap_for(20_000, 100) == 100
    assert cap_for(256, 10_000) == 256 - MIN_RESERVE
    assert cap_for(10, 0) == 0


def test_taking_past_the_cap_refuses_and_counts() -> None:
    held = HeldConnections(2)
    held.take()
    assert held.try_take()
    with pytest.raises(NoSlot, match="max_held_connections"):
        held.take()
    assert not held.try_take()
    assert held.refused == 2
    held.give_back()
    assert held.try_take()
    for _ in range(5):
        held.give_back()
    assert held.held == 0


def test_started_it_caps_by_the_raised_soft_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before, now, hard_seen = raise_fd_limit()
    assert (before, hard_seen) == (soft, hard)
    assert now == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert now >= soft
    held = HeldConnections()
    held.start()
    assert held.cap == cap_for(now, 0)


class _Transport:
    def __init__(self, sock: object) -> None:
        self.sock = sock

    def get_extra_info(self, name: str) -> object:
        return self.sock if name == "socket" else None


def test_keepalive_goes_on_tcp_sockets_only() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        assert keep_alive(_Transport(tcp))
        assert tcp.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE_IDLE
    unix, other = socket.socketpair()
    with unix, other:
        assert not keep_alive(_Transport(unix))
        assert unix.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
    assert not keep_alive(_Transport(None))  # a closed transport has no socket
    assert not keep_alive(object())
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed.close()
    assert not keep_alive(_Transport(closed))
