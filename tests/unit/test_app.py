"""The composition root stops exactly what started: after a start that failed halfway too."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from claude_bridge.app import build
from claude_bridge.config import parse_config
from claude_bridge.devenv.processes import free_port
from claude_bridge.store.lock import leader_lock


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_a_start_that_fails_halfway_is_undone_by_stop(store_url: str, tmp_path: Path) -> None:
    as_port, hook_port = free_port(), free_port()
    config = parse_config(
        {
            "database": store_url,
            "appservice": {
                "hostname": "127.0.0.1",
                "port": as_port,
                "as_token": "a",
                "hs_token": "h",
            },
            "hooks": {"listen": f"127.0.0.1:{hook_port}", "tokens": {"laptop": "t"}},
        }
    )
    bridge = build(config, tmp_path)
    with socket.socket() as taken:  # the hook port is someone else's: start fails there
        taken.bind(("127.0.0.1", hook_port))
        taken.listen()
        with pytest.raises(OSError):
            await bridge.start()
        assert _listening(as_port)  # the lock, the database and the appservice had started
        assert not bridge.appservice.ready

        await bridge.stop()

    assert not _listening(as_port)
    # The leader lock is free again: another process takes it at once.
    lock = leader_lock(config.database_url(tmp_path), poll_interval=0.05)
    await asyncio.wait_for(lock.acquire(), timeout=30)
    await lock.release()
    await bridge.stop()  # a second stop has nothing left to do
