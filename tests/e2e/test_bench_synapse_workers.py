"""``bench run --synapse persisters=N`` for real: Synapse on Postgres, its events written by
worker processes over HTTP replication and Redis, all on loopback; the database is dropped."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from bench.synapse_workers import ScaledSynapse, SynapseShape
from tests.conftest import PG_ADMIN_DSN
from tests.matrix_client import user_client

pytestmark = pytest.mark.e2e


async def test_event_persisters_write_what_clients_send(tmp_path: Path) -> None:
    hs = ScaledSynapse(tmp_path / "synapse", SynapseShape("postgres", 2), PG_ADMIN_DSN)
    try:
        await hs.start(timeout=120)
        assert len(hs.pids) == 3  # the main process and two persisters
        alice = await user_client(hs, "alice")
        try:
            rooms = [await alice.create_room(name=f"room {i}") for i in range(2)]
            sent = {await alice.send_text(room, f"m{i}") for i in range(5) for room in rooms}
            seen = {
                event["event_id"]
                for room in rooms
                for event in await alice.messages(room)
                if event["type"] == "m.room.message"
            }
            assert sent <= seen
        finally:
            await alice.close()
        # Every one of them went through a worker: the workers own the events stream.
        batches = sum(
            (tmp_path / "synapse" / f"{name}.log").read_text().count("events to persist")
            for name in hs.worker_ports
        )
        assert batches >= len(sent)
    finally:
        await hs.close()
    conn = await asyncpg.connect(PG_ADMIN_DSN.replace("postgres://", "postgresql://"))
    try:
        found = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", hs.database_name)
    finally:
        await conn.close()
    assert found is None
