"""A throwaway PostgreSQL cluster that a test may stop and start at will.

The machine's shared server on 127.0.0.1:5432 is used by everyone's tests and must never be
restarted; a database-outage test runs its own cluster instead: ``initdb`` into a temporary
directory, ``pg_ctl`` on a free loopback port, trust auth for ``postgres``, no Unix socket in the
shared directory. Postgres refuses to run as root, so as root the cluster belongs to the
``postgres`` system user (``runuser``).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import tempfile
import time
from pathlib import Path

import asyncpg

from claude_bridge.devenv.synapse import free_port

PG_BIN = Path(os.environ.get("CLAUDE_BRIDGE_PG_BIN", "/usr/lib/postgresql/15/bin"))


def available() -> bool:
    return (PG_BIN / "initdb").exists() and (os.geteuid() != 0 or _postgres_user() is not None)


def _postgres_user() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        return None


class PrivatePostgres:
    def __init__(self) -> None:
        self.port = free_port()
        # Not pytest's tmp_path: as root that is private to root, and the server runs as postgres.
        self.base = Path(tempfile.mkdtemp(prefix="claude-bridge-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "postgres.log"
        self._owner = _postgres_user() if os.geteuid() == 0 else None
        if self._owner is not None:
            os.chown(self.base, self._owner.pw_uid, self._owner.pw_gid)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    async def _run(self, *argv: str) -> None:
        cmd = [str(PG_BIN / argv[0]), *argv[1:]]
        if self._owner is not None:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(argv[:2])} failed: {out.decode()}\n{tail}")

    async def init(self) -> None:
        await self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync", "--no-instructions",
        )  # fmt: skip

    async def start(self) -> float:
        """Start the server and wait until it accepts connections; returns the seconds taken."""
        began = time.monotonic()
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} "
            "-c fsync=off -c full_page_writes=off"
        )
        await self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start"
        )
        return time.monotonic() - began

    async def stop(self, mode: str = "fast") -> None:
        """``fast`` ends every session at once (what a restart does to clients)."""
        await self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    async def create_database(self, name: str) -> str:
        conn = await asyncpg.connect(self.dsn())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.dsn(name)

    async def destroy(self) -> None:
        try:
            await self.stop("immediate")
        except RuntimeError:
            pass  # not running
        shutil.rmtree(self.base, ignore_errors=True)
