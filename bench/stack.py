"""The system under test: a throwaway Synapse and the bridge as a subprocess, on loopback only.

The bridge runs as ``python -m claude_bridge run -c config.yaml`` in its own process, so its RSS
can be read from ``/proc`` and the load generator (this process) does not share its event loop.
Everything lives in a fresh temporary directory; with ``--postgres`` the bridge's database is a
fresh database on ``127.0.0.1:5432`` (``CLAUDE_BRIDGE_TEST_PG`` overrides the admin DSN), dropped
at the end. The config is built like ``tests/e2e/conftest.py`` builds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from bench.httpclient import HookConnection
from bench.observer import Observer
from bench.synapse_workers import ScaledSynapse, SynapseShape
from claude_bridge.config import ENV_PREFIX, HooksConfig, parse_config
from claude_bridge.devenv.synapse import LocalSynapse, die_with_parent, free_port
from claude_bridge.registration import build_registration, new_token
from claude_bridge.render.secret_patterns import SECRET_KEY
from tests.matrix_client import MatrixTestClient, user_client

REPO = Path(__file__).resolve().parents[1]
HOOK_TOKEN = "bench-hook-secret"
PG_ADMIN = os.environ.get("CLAUDE_BRIDGE_TEST_PG", "postgres://postgres@127.0.0.1:5432/postgres")


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM / … of a process, in KiB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Vm"):
                name, _, value = line.partition(":")
                out[name] = int(value.split()[0])
    return out


def _proc_stat(pid: int | str) -> tuple[str, list[str]]:
    """A process's name and the fields of ``/proc/<pid>/stat`` after it (``fields[11]`` is
    utime); the name is cut out first, since it may hold spaces and parentheses."""
    with open(f"/proc/{pid}/stat") as f:
        head, tail = f.read().rsplit(")", 1)
    return head.split("(", 1)[1], tail.split()


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = _proc_stat(pid)[1]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """User + system CPU time of the Postgres server on this machine so far: every ``postgres``
    process, with what its ended children (backends that closed) spent. 0.0 where none runs."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            name, fields = _proc_stat(entry.name)
        except OSError:  # gone meanwhile
            continue
        if name == "postgres":
            total += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return total / os.sysconf("SC_CLK_TCK")


@dataclass
class StackOptions:
    postgres: bool = False
    keep: bool = False
    log_level: str = "INFO"
    profile_dir: Path | None = None
    workdir: Path | None = None
    bridge_env: dict[str, str] = field(default_factory=dict)
    """Config overrides (``CLAUDE_BRIDGE__…``) for the bridge process, set by the bench."""
    synapse: SynapseShape = field(default_factory=SynapseShape)
    """``--synapse``: one process on SQLite (the default), on Postgres, or with workers."""


@dataclass
class Stack:
    options: StackOptions
    workdir: Path = field(init=False)
    synapse: LocalSynapse = field(init=False)
    config: dict[str, Any] = field(init=False)
    database_url: str = field(init=False)
    alice: MatrixTestClient = field(init=False)
    observer: Observer = field(init=False)
    bridge_proc: subprocess.Popen[bytes] | None = field(init=False, default=None)
    _pg_db: str | None = field(init=False, default=None)
    _db: Any = field(init=False, default=None)
    notes: list[str] = field(init=False, default_factory=list)
    _restart_env: dict[str, str] = field(init=False, default_factory=dict)

    # -- addresses ---------------------------------------------------------------------------

    @property
    def hook_host(self) -> str:
        return "127.0.0.1"

    @property
    def hook_port(self) -> int:
        return int(self.config["hooks"]["listen"].rsplit(":", 1)[1])

    @property
    def hook_url(self) -> str:
        return f"http://{self.hook_host}:{self.hook_port}"

    @property
    def as_token(self) -> str:
        return str(self.config["appservice"]["as_token"])

    @property
    def domain(self) -> str:
        return str(self.config["homeserver"]["domain"])

    @property
    def operators(self) -> list[str]:
        return [u for u, level in self.config["bridge"]["permissions"].items() if u.startswith("@")]

    @property
    def bridge_pid(self) -> int:
        assert self.bridge_proc is not None
        return self.bridge_proc.pid

    def hook_connection(self) -> HookConnection:
        return HookConnection(self.hook_host, self.hook_port, HOOK_TOKEN)

    def appservice_client(self, localpart: str) -> MatrixTestClient:
        """A client speaking as ``@localpart`` through the appservice's as_token."""
        return MatrixTestClient(
            self.synapse.url, f"@{localpart}:{self.domain}", self.as_token, appservice=True
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        base = self.options.workdir
        if base is not None:
            base.mkdir(parents=True, exist_ok=True)
        self.workdir = Path(tempfile.mkdtemp(prefix="claude-bridge-bench-", dir=base))
        synapse_port, as_port, hook_port = free_port(), free_port(), free_port()
        hooks: dict[str, Any] = {
            "listen": f"127.0.0.1:{hook_port}",
            # No per-token cap on held approvals: ``hold`` holds 1,000 of them on this token.
            "tokens": {"bench": {"secret": HOOK_TOKEN, "max_held_approvals": 0}},
        }
        # Benchmarks open many sessions a minute on one token; the per-token limit on new threads
        # (where this tree has it) would answer 429 and measure the limiter instead.
        if "new_threads_per_minute" in HooksConfig.model_fields:
            hooks["new_threads_per_minute"] = 0
        self.config = {
            "homeserver": {"address": f"http://127.0.0.1:{synapse_port}", "domain": "localhost"},
            "appservice": {
                "hostname": "127.0.0.1",
                "port": as_port,
                "address": f"http://127.0.0.1:{as_port}",
                "as_token": new_token(),
                "hs_token": new_token(),
            },
            "hooks": hooks,
            "bridge": {
                "permissions": {
                    "@alice:localhost": "operator",
                    "@admin:localhost": "admin",
                },
                # The burst measures how fast every one of its events reaches the room; the
                # backlog cap would fold most of them (tests/e2e/security/test_limits.py).
                "mirror": {"backlog_events": 1_000_000},
            },
            "logging": {"level": self.options.log_level, "format": "json"},
        }
        if self.options.postgres:
            self.database_url = await self._create_pg_database()
        else:
            self.database_url = f"sqlite:{self.workdir / 'bridge.db'}"
        self.config["database"] = self.database_url
        parsed = parse_config(self.config)
        registration = self.workdir / "registration.yaml"
        YAML().dump(build_registration(parsed), registration)
        (self.workdir / "config.yaml").write_text(_yaml_text(self.config))
        if self.options.synapse.database == "sqlite":
            self.synapse = LocalSynapse(
                self.workdir / "synapse", port=synapse_port, app_service_config_files=[registration]
            )
        else:
            self.synapse = ScaledSynapse(
                self.workdir / "synapse",
                self.options.synapse,
                PG_ADMIN,
                port=synapse_port,
                app_service_config_files=[registration],
            )
        await self.synapse.start()
        self.alice = await user_client(self.synapse, "alice")
        await self.synapse.register_user("admin", admin=True)
        await self.start_bridge()
        self.observer = Observer(self.alice)
        await self.observer.start()

    def _spawn_bridge(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.options.bridge_env, "PYTHONUNBUFFERED": "1"}
        # BENCH_BRIDGE_LAUNCHER: a Python script run instead of ``-m claude_bridge`` (same
        # arguments), e.g. to instrument the bridge or try a change without editing the package.
        launcher = os.environ.get("BENCH_BRIDGE_LAUNCHER")
        entry = [launcher] if launcher else ["-m", "claude_bridge"]
        with open(self.workdir / "bridge.log", "ab") as log:
            return subprocess.Popen(
                [sys.executable, *entry, "run", "-c", str(self.workdir / "config.yaml")],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=die_with_parent(),
            )

    def _bridge_ready(self, since: int) -> bool:
        with open(self.workdir / "bridge.log", "rb") as log:
            log.seek(since)
            return b"bridge ready" in log.read()

    async def start_bridge(self, timeout: float = 60.0) -> None:
        """Start ``claude-bridge run`` and wait for its "bridge ready" log line."""
        log = self.workdir / "bridge.log"
        since = log.stat().st_size if log.exists() else 0  # a restart appends to the same log
        self.bridge_proc = self._spawn_bridge()
        deadline = time.monotonic() + timeout
        while True:
            if self.bridge_proc.poll() is not None:
                raise RuntimeError(
                    f"the bridge exited with {self.bridge_proc.returncode} during start-up:\n"
                    + self.bridge_log_tail()
                )
            if self._bridge_ready(since):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the bridge was not ready in {timeout}s:\n{self.bridge_log_tail()}"
                )
            await asyncio.sleep(0.05)

    def bridge_log_tail(self, lines: int = 30) -> str:
        path = self.workdir / "bridge.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def bridge_log_problems(self) -> list[str]:
        """Warnings and errors the bridge logged (for the report)."""
        path = self.workdir / "bridge.log"
        if not path.exists():
            return []
        out = []
        for line in path.read_text(errors="replace").splitlines():
            if '"level": "warning"' in line or '"level": "error"' in line or "Traceback" in line:
                out.append(line[:300])
        return out

    async def stop_bridge(self) -> None:
        proc = self.bridge_proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 20)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)

    async def restart_bridge(self, env: dict[str, str]) -> None:
        """The bridge again with ``env`` added to its config overrides (same database, rooms)."""
        await self.stop_bridge()
        base = {k: v for k, v in self.options.bridge_env.items() if k not in self._restart_env}
        self._restart_env = dict(env)
        self.options.bridge_env = {**base, **env}
        await self.start_bridge()

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.observer.stop()
        with contextlib.suppress(Exception):
            await self.alice.close()
        if self._db is not None:
            with contextlib.suppress(Exception):
                await self._db.stop()
        await self.stop_bridge()
        with contextlib.suppress(Exception):
            if isinstance(self.synapse, ScaledSynapse):
                await self.synapse.close()
            else:
                await self.synapse.stop()
        if self._pg_db:
            with contextlib.suppress(Exception):
                await self._drop_pg_database()
        if not self.options.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- the bridge's database, read from the outside ----------------------------------------

    async def db(self) -> Any:
        """A mautrix ``Database`` on the bridge's database (schema already migrated by it)."""
        if self._db is None:
            from claude_bridge.store import create_database

            self._db = create_database(self.database_url, pool_size=2)
            await self._db.start()
        return self._db

    async def pending(self) -> int:
        db = await self.db()
        return int(await db.fetchval("SELECT COUNT(*) FROM hook_event WHERE state='pending'"))

    async def drain(self, timeout: float, poll: float = 0.05) -> float:
        """Wait until the outbox is empty; returns the seconds waited. Raises TimeoutError."""
        start = time.perf_counter()
        async with asyncio.timeout(timeout):
            while True:
                if not await self.pending():
                    return time.perf_counter() - start
                await asyncio.sleep(poll)

    async def _create_pg_database(self) -> str:
        import asyncpg
        from yarl import URL

        name = f"claude_bridge_bench_{secrets.token_hex(4)}"
        conn = await asyncpg.connect(PG_ADMIN, timeout=10)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self._pg_db = name
        return str(URL(PG_ADMIN).with_path(f"/{name}"))

    async def _drop_pg_database(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(PG_ADMIN, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self._pg_db}" WITH (FORCE)')
        finally:
            await conn.close()

    # -- profiling ---------------------------------------------------------------------------

    def _spawn_pyspy(self, name: str) -> subprocess.Popen[bytes] | None:
        directory = self.options.profile_dir
        pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if directory is None or not Path(pyspy).exists():
            return None
        directory.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(
            [pyspy, "record", "-p", str(self.bridge_pid), "-f", "raw", "-r", "250",
             "--nonblocking", "-o", str(directory / f"{name}.collapsed.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent(),
        )  # fmt: skip

    @contextlib.asynccontextmanager
    async def profile(self, name: str) -> AsyncIterator[None]:
        """py-spy on the bridge process while the block runs (only with ``--profile DIR``)."""
        proc = self._spawn_pyspy(name)
        if proc is None:
            yield
            return
        await asyncio.sleep(0.5)  # attached
        try:
            yield
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.to_thread(proc.wait, 15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _yaml_text(data: dict[str, Any]) -> str:
    import io

    buf = io.StringIO()
    YAML().dump(data, buf)
    return buf.getvalue()


async def register_ghost(stack: Stack, localpart: str) -> MatrixTestClient:
    """Register an appservice user (as the bot) and return a client speaking as it."""
    bot = stack.appservice_client(str(stack.config["appservice"].get("bot_username", "claudebot")))
    try:
        await bot.request(
            "POST",
            "/_matrix/client/v3/register",
            params={"kind": "user"},
            body={"type": "m.login.application_service", "username": localpart},
        )
    finally:
        await bot.close()
    return stack.appservice_client(localpart)


def machine() -> dict[str, Any]:
    """What this ran on, for the table in docs/benchmarks.md."""
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem_kib = int(line.split()[1])
    load = os.getloadavg()
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "loadavg_at_start": [round(x, 2) for x in load],
        "python": sys.version.split()[0],
    }


CODE_PATHS = ("claude_bridge", "bench/*.py", "migrations", "pyproject.toml")
"""What runs in a benchmark: a change here (tracked or not) makes a result dirty."""
LAUNCHER = "BENCH_BRIDGE_LAUNCHER"


_PLAIN_SETTING = re.compile(r"[A-Za-z0-9_.:+-]{1,24}")
_SECRET_SEGMENT = re.compile(SECRET_KEY)


def shown_setting(key: str, value: str) -> str:
    """``value`` as a results file may keep it: a plain setting (``asyncio``, ``false``,
    ``5000``) under a key no part of which names a secret; anything else is ``<hidden>``, since
    results files are committed and an override may be a hook token or a DSN with a password."""
    segments = [s for s in key.removeprefix(ENV_PREFIX).split("__") if s]
    secret_named = any(
        _SECRET_SEGMENT.match(s) or _SECRET_SEGMENT.match(s.removesuffix("S")) for s in segments
    )
    if secret_named or not _PLAIN_SETTING.fullmatch(value):
        return "<hidden>"
    return value


def git_revision(environ: Mapping[str, str] | None = None, repo: Path = REPO) -> dict[str, Any]:
    """The commit, and whether what ran differs from it: ``dirty`` is set by uncommitted or
    untracked files under the code paths (an untracked migration runs too), by a bridge
    launcher script, and by ``CLAUDE_BRIDGE__…`` config overrides in the environment; each
    cause is listed under ``dirty_because`` (an override's value only where
    :func:`shown_setting` finds it plain). Docs and result files don't count."""

    def run(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=repo, capture_output=True, text=True, timeout=10, check=False
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    env = os.environ if environ is None else environ
    status = run("status", "--porcelain", "--untracked-files=all", "--", *CODE_PATHS)
    because = [f"{'untracked' if line.startswith('??') else 'changed'}: {line[3:]}"
               for line in status.splitlines() if line.strip()]  # fmt: skip
    if env.get(LAUNCHER):
        because.append(f"{LAUNCHER}={env[LAUNCHER]}")
    because += [
        f"{k}={shown_setting(k, v)}" for k, v in sorted(env.items()) if k.startswith(ENV_PREFIX)
    ]
    commit = run("rev-parse", "HEAD").strip()
    return {"commit": commit, "dirty": bool(because), "dirty_because": because}


def tool_versions() -> dict[str, str]:
    out = {}
    for module in ("synapse", "aiohttp", "mautrix", "aiosqlite", "asyncpg", "uvloop"):
        with contextlib.suppress(Exception):
            mod = __import__(module)
            out[module] = str(getattr(mod, "__version__", ""))
    return out


def commands_exist(names: Sequence[str]) -> dict[str, bool]:
    return {n: shutil.which(n) is not None for n in names}


def _system_busy_seconds() -> float:
    """CPU seconds all processes have spent busy (user+nice+system+irq+softirq+steal), all CPUs."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Noise:
    """How busy the machine was with *other* work while a benchmark ran.

    ``others_cores``: CPU cores used on average by processes other than the bridge, Synapse and
    this benchmark (other people's test suites…): on a 2-core machine, anything above ~0.2 makes
    latencies noisy. ``loop_lag_p99_ms``: this process's event-loop lag (a 5 ms timer's delay).
    """

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = [p for p in pids if p]
        self._lags: list[float] = []
        self._task: asyncio.Task[None] | None = None
        self._start = (0.0, 0.0, 0.0)

    def _ours(self) -> float:
        total = 0.0
        for pid in [*self.pids, os.getpid()]:
            with contextlib.suppress(OSError):
                total += proc_cpu_seconds(pid)
        return total

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.005)
            self._lags.append((loop.time() - t - 0.005) * 1000)

    def start(self) -> None:
        self._start = (time.monotonic(), _system_busy_seconds(), self._ours())
        self._task = asyncio.create_task(self._probe())

    async def stop(self) -> dict[str, float]:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        t0, busy0, ours0 = self._start
        elapsed = max(time.monotonic() - t0, 1e-6)
        others = (_system_busy_seconds() - busy0) - (self._ours() - ours0)
        lags = sorted(self._lags) or [0.0]
        return {
            "others_cores": round(max(others, 0.0) / elapsed, 2),
            "ours_cores": round((self._ours() - ours0) / elapsed, 2),
            "loop_lag_p99_ms": round(lags[int(len(lags) * 0.99)], 1),
            "loadavg_1m": round(os.getloadavg()[0], 2),
        }
