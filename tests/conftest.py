"""Fixtures shared by every test: the stores the bridge runs on.

``store_url`` is parametrised over SQLite and Postgres, so a test that takes it runs on both.
Postgres is the machine's server on 127.0.0.1:5432 (``CLAUDE_BRIDGE_TEST_PG`` overrides the admin
DSN); each test gets a fresh database that is dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

PG_ADMIN_DSN = os.environ.get(
    "CLAUDE_BRIDGE_TEST_PG", "postgres://postgres@127.0.0.1:5432/postgres"
)


async def create_pg_database() -> str:
    name = f"claude_bridge_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"


async def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:{tmp_path / 'bridge.db'}"
        return
    url = await create_pg_database()
    try:
        yield url
    finally:
        await drop_pg_database(url)
