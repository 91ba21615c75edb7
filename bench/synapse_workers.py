"""Synapse as a team would scale it: on Postgres, with event persisters as workers over Redis.

``bench run --synapse postgres`` runs the one Synapse process on Postgres instead of SQLite;
``--synapse persisters=N`` adds N ``generic_worker`` processes that own the events stream
(``stream_writers: events``), talking to the main process over HTTP replication and Redis
(127.0.0.1:6379). Everything binds 127.0.0.1. The appservice still gets its transactions from
the main process: sharding the persisters splits where events are written, not who sends them.

Needs Synapse's ``postgres`` and ``redis`` extras (psycopg2, txredisapi, hiredis), which the
``bench`` and ``dev`` extras install. Redis's pub/sub channels are server-wide, so two
worker-mode benchmarks on one machine would hear each other: run one at a time. Synapse also
caches events there (``cache_v1:…`` keys, which expire).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from claude_bridge.devenv.processes import die_with_parent, free_port
from claude_bridge.devenv.synapse import LocalSynapse, SynapseError, write_private_yaml

REDIS = ("127.0.0.1", 6379)


@dataclass(frozen=True)
class SynapseShape:
    """What ``--synapse`` asked for: ``sqlite`` (one process, the default), ``postgres`` (one
    process on Postgres) or ``persisters=N`` (Postgres, Redis, N event persisters)."""

    database: str = "sqlite"
    persisters: int = 0

    @classmethod
    def parse(cls, text: str) -> SynapseShape:
        if text in ("sqlite", "postgres"):
            return cls(text)
        name, _, count = text.partition("=")
        if name == "persisters" and count.isdigit() and 1 <= int(count) <= 8:
            return cls("postgres", int(count))
        raise ValueError(f"--synapse takes sqlite, postgres or persisters=N (1-8), not {text!r}")

    def __str__(self) -> str:
        return f"persisters={self.persisters}" if self.persisters else self.database


class ScaledSynapse(LocalSynapse):
    """A :class:`LocalSynapse` on its own Postgres database, with ``persisters`` workers."""

    def __init__(self, workdir: Path, shape: SynapseShape, admin_dsn: str, **kwargs: Any) -> None:
        super().__init__(workdir, **kwargs)
        self.shape = shape
        self.admin_dsn = admin_dsn
        self.database_name = f"synapse_bench_{secrets.token_hex(4)}"
        self.replication_port = free_port()
        self.worker_ports = {f"persister{i + 1}": free_port() for i in range(shape.persisters)}
        self._workers: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def pids(self) -> list[int]:
        """The main process and every worker: their CPU is Synapse's."""
        return super().pids + [p.pid for p in self._workers.values() if p.poll() is None]

    def config(self) -> dict[str, Any]:
        config = super().config()
        admin = URL(self.admin_dsn)
        config["database"] = {
            "name": "psycopg2",
            "args": {
                "user": admin.user or "postgres",
                "host": admin.host or "127.0.0.1",
                "port": admin.port or 5432,
                "database": self.database_name,
                "cp_min": 5,
                "cp_max": 10,
            },
        }
        if not self.shape.persisters:
            return config
        config["listeners"].append(_replication_listener(self.replication_port))
        config["instance_map"] = {
            "main": {"host": "127.0.0.1", "port": self.replication_port},
            **{
                name: {"host": "127.0.0.1", "port": port}
                for name, port in self.worker_ports.items()
            },
        }
        config["stream_writers"] = {"events": list(self.worker_ports)}
        config["redis"] = {"enabled": True, "host": REDIS[0], "port": REDIS[1]}
        return config

    async def start(self, timeout: float = 60.0) -> None:
        if self.running:
            return
        await self._create_database()
        await super().start(timeout)
        for name, port in self.worker_ports.items():
            self._workers[name] = self._spawn_worker(name, port)
        deadline = time.monotonic() + timeout
        for name, port in self.worker_ports.items():
            await self._wait_healthy(name, port, deadline)

    async def stop(self) -> None:
        for proc in self._workers.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self._workers.values():
            try:
                await asyncio.to_thread(proc.wait, 10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._workers.clear()
        await super().stop()

    async def close(self) -> None:
        """Stop, and drop the database (``stop()`` keeps it for a ``start()`` again)."""
        await self.stop()
        await self._drop_database()

    def kill(self) -> None:
        for proc in self._workers.values():
            if proc.poll() is None:
                proc.kill()
        super().kill()

    # -- workers ----------------------------------------------------------------------------

    def _spawn_worker(self, name: str, port: int) -> subprocess.Popen[bytes]:
        log_config = self.workdir / f"{name}.log.config"
        logging = self._log_config()
        logging["handlers"]["file"]["filename"] = str(self.workdir / f"{name}.log")
        worker = {
            "worker_app": "synapse.app.generic_worker",
            "worker_name": name,
            "worker_listeners": [_replication_listener(port)],
            "worker_log_config": str(log_config),
        }
        write_private_yaml(log_config, logging)
        write_private_yaml(self.workdir / f"{name}.yaml", worker)
        with open(self.workdir / f"{name}.stdout.log", "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "synapse.app.generic_worker",
                 "-c", str(self.config_path), "-c", str(self.workdir / f"{name}.yaml")],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(),
            )  # fmt: skip

    async def _wait_healthy(self, name: str, port: int, deadline: float) -> None:
        url = f"http://127.0.0.1:{port}/health"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                proc = self._workers[name]
                if proc.poll() is not None:
                    raise SynapseError(
                        f"synapse worker {name} exited with code {proc.returncode}\n"
                        + (self.workdir / f"{name}.log").read_text(errors="replace")[-4000:]
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url) as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise SynapseError(f"synapse worker {name} not healthy in time")
                await asyncio.sleep(0.1)

    # -- its database -----------------------------------------------------------------------

    async def _create_database(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.admin_dsn, timeout=10)
        try:
            # Synapse refuses a database whose collation is not C.
            await conn.execute(
                f"CREATE DATABASE \"{self.database_name}\" ENCODING 'UTF8' "
                "LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
            )
        except asyncpg.DuplicateDatabaseError:
            pass  # started again on the same work dir
        finally:
            await conn.close()

    async def _drop_database(self) -> None:
        import asyncpg

        with contextlib.suppress(OSError, asyncpg.PostgresError):
            conn = await asyncpg.connect(self.admin_dsn, timeout=10)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)')
            finally:
                await conn.close()


def _replication_listener(port: int) -> dict[str, Any]:
    return {
        "port": port,
        "type": "http",
        "bind_addresses": ["127.0.0.1"],
        "resources": [{"names": ["replication"], "compress": False}],
    }
