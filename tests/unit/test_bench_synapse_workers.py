"""``bench run --synapse``: the shapes it accepts and the Synapse config each one writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.synapse_workers import ScaledSynapse, SynapseShape


def test_shapes_parse() -> None:
    assert SynapseShape.parse("sqlite") == SynapseShape()
    assert SynapseShape.parse("postgres") == SynapseShape("postgres")
    assert SynapseShape.parse("persisters=2") == SynapseShape("postgres", 2)
    assert str(SynapseShape.parse("persisters=2")) == "persisters=2"
    for bad in ("mysql", "persisters=0", "persisters=9", "persisters=two", "persisters"):
        with pytest.raises(ValueError, match="--synapse takes"):
            SynapseShape.parse(bad)


def test_one_process_on_postgres_has_no_workers(tmp_path: Path) -> None:
    hs = ScaledSynapse(tmp_path, SynapseShape("postgres"), "postgres://pg@127.0.0.1:5433/x")
    config = hs.config()
    assert config["database"]["name"] == "psycopg2"
    expected = {"user": "pg", "host": "127.0.0.1", "port": 5433, "database": hs.database_name}
    assert config["database"]["args"].items() >= expected.items()
    assert "stream_writers" not in config and "redis" not in config
    assert len(config["listeners"]) == 1


def test_persisters_own_the_events_stream_on_loopback(tmp_path: Path) -> None:
    hs = ScaledSynapse(tmp_path, SynapseShape("postgres", 2), "postgres://postgres@127.0.0.1/x")
    config = hs.config()
    assert config["stream_writers"] == {"events": ["persister1", "persister2"]}
    assert set(config["instance_map"]) == {"main", "persister1", "persister2"}
    assert config["redis"]["enabled"] is True
    assert config["redis"]["host"] == "127.0.0.1"
    assert all(entry["host"] == "127.0.0.1" for entry in config["instance_map"].values())
    for listener in config["listeners"]:
        assert listener["bind_addresses"] == ["127.0.0.1"]
    ports = [listener["port"] for listener in config["listeners"]]
    assert hs.replication_port in ports
    assert config["instance_map"]["main"]["port"] == hs.replication_port


async def test_postgres_cpu_counts_the_servers_work() -> None:
    """The burst's "Postgres server" CPU: work a backend does shows up, including that of a
    backend which has closed by the time it is read (its parent counts it)."""
    import asyncpg

    from bench.stack import postgres_cpu_seconds
    from tests.conftest import PG_ADMIN_DSN

    before = postgres_cpu_seconds()
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        # Work measured in CPU, not wall time: some tenths of a second on any machine.
        await conn.fetchval("SELECT count(*) FROM generate_series(1, 3000000) g WHERE g % 7 = 0")
    finally:
        await conn.close()
    assert postgres_cpu_seconds() - before >= 0.05
