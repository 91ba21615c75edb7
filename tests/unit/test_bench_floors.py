"""The benchmark's floor probes commit real rows into both stores and clean up after."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.floors import Floors


async def test_floors_measure_commits_and_loop_delay(store_url: str, tmp_path: Path) -> None:
    floors = Floors(store_url, tmp_path, b'{"hook_event_name": "PostToolUse"}')
    await floors.open()
    try:
        async with floors.running(rate=100):
            await asyncio.sleep(0.3)
        assert len(floors.commits) >= 5 and all(ms > 0 for ms in floors.commits)
        assert len(floors.delays) >= 5
        store, client = floors.rows()
        assert store.status == client.status == "ref"
        assert store.value is not None and store.value >= min(floors.commits)
        assert store.detail["n"] == len(floors.commits)
    finally:
        await floors.close()
    if store_url.startswith("postgres"):  # the scratch table is gone again
        import asyncpg

        conn = await asyncpg.connect(store_url.replace("postgres://", "postgresql://"))
        try:
            assert await conn.fetchval("SELECT to_regclass('bench_probe')") is None
        finally:
            await conn.close()
    else:
        assert (tmp_path / "probe.db").exists()
