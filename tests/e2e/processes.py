"""Bridges as real processes, a homeserver of their own, and numbered hook bursts to check against.

Process-level fault tests (``test_fault_*.py``) need what an in-process ``Bridge`` cannot give:
a ``SIGKILL`` in the middle of a commit, two processes on one database, a process that outlives
its database. This module has the pieces:

- ``fault_stack()``: a private ``LocalSynapse`` with the bridge's registration and an operator
  ``alice``, so a test may stop it, and leave its appservice backoff state, without touching the
  session's shared ``stack``;
- ``BridgeProcess``: ``python -m claude_bridge run -c <config>`` with its JSON log captured, so a
  test waits for a log line ("bridge ready", "waiting for the lock held by pid …");
- ``Burst``: sessions posting numbered prompts (``mark-<run>-s<S>-e<E>``), each session in order,
  recording which ones the bridge acknowledged;
- ``room_marks()`` and ``check_room()``: what a Matrix user reads back, checked for "every
  acknowledged event exactly once, in order per session".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sqlite3
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from ruamel.yaml import YAML
from yarl import URL

from claude_bridge.devenv.synapse import LocalSynapse, die_with_parent
from tests.e2e.conftest import loopback_config, synapse_for
from tests.matrix_client import MatrixRequestError, MatrixTestClient, user_client

HOOK_TOKEN = "fault-hook-secret"
ROOT = Path(__file__).resolve().parents[2]


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 60.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# --- a homeserver of the fault tests' own ----------------------------------------------------


@dataclass
class FaultStack:
    synapse: LocalSynapse
    config: dict[str, Any]
    alice: MatrixTestClient
    workdir: Path

    def bridge_config(self, database: str, **overrides: Any) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(json.dumps(self.config))
        data["database"] = database
        for key, value in overrides.items():
            data[key] = {**data.get(key, {}), **value}
        return data

    @property
    def hook_url(self) -> str:
        return f"http://{self.config['hooks']['listen']}"


@contextlib.asynccontextmanager
async def fault_stack(workdir: Path) -> AsyncIterator[FaultStack]:
    config = loopback_config(
        permissions={"@alice:localhost": "operator"},
        logging={"level": "INFO", "format": "json"},
        hook_token=HOOK_TOKEN,
    )
    synapse = await synapse_for(config, workdir)
    alice = await user_client(synapse, "alice")
    try:
        yield FaultStack(synapse, config, alice, workdir)
    finally:
        await alice.close()
        await synapse.stop()


# --- the bridge as a process ----------------------------------------------------------------


class BridgeProcess:
    """One ``claude-bridge run`` process; its stderr (JSON log lines) kept in memory and a file."""

    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path,
        name: str = "bridge",
        *,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.preexec = preexec  # run in the child before exec, after die_with_parent
        self.name = name
        self.config_path = workdir / f"{name}.yaml"
        self.log_path = workdir / f"{name}.log"
        self.lines: list[str] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._new_line = asyncio.Event()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    @property
    def hook_url(self) -> str:
        return f"http://{self.config['hooks']['listen']}"

    async def start(self) -> BridgeProcess:
        with self.config_path.open("w") as f:
            YAML(typ="safe").dump(self.config, f)
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "claude_bridge", "run", "-c", str(self.config_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
            preexec_fn=self._preexec(),
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read(self._proc), name=f"{self.name}-log")
        return self

    def _preexec(self) -> Callable[[], None] | None:
        first, then = die_with_parent(), self.preexec
        if then is None:
            return first

        def both() -> None:
            if first is not None:
                first()
            then()

        return both

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        with self.log_path.open("a") as log:
            while line := await proc.stderr.readline():
                text = line.decode(errors="replace").rstrip("\n")
                self.lines.append(text)
                log.write(text + "\n")
                log.flush()
                self._wake()
        await proc.wait()
        self._wake()

    def _wake(self) -> None:
        self._new_line.set()
        self._new_line = asyncio.Event()

    async def wait_for_log(self, text: str, *, timeout: float = 30.0, since: int = 0) -> str:
        """The first log line from index ``since`` on containing ``text``; fails early on exit."""
        deadline = asyncio.get_running_loop().time() + timeout
        seen = since
        while True:
            for line in self.lines[seen:]:
                if text in line:
                    return line
            seen = len(self.lines)
            if self._reader is not None and self._reader.done():
                raise AssertionError(
                    f"{self.name} exited ({self.returncode}) before logging {text!r}\n{self.tail()}"
                )
            waiter = self._new_line
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter.wait()
            except TimeoutError:
                raise AssertionError(
                    f"{self.name} did not log {text!r} within {timeout}s\n{self.tail()}"
                ) from None

    async def wait_ready(self, timeout: float = 60.0) -> None:
        await self.wait_for_log("bridge ready", timeout=timeout)

    def logged(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.lines[-n:])

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, like a crash or the OOM killer."""
        if self._proc and self._proc.returncode is None:
            self._proc.kill()

    def terminate(self) -> None:
        if self._proc and self._proc.returncode is None:
            self._proc.terminate()

    async def wait_exit(self, timeout: float = 30.0) -> int:
        assert self._proc is not None
        async with asyncio.timeout(timeout):
            code = await self._proc.wait()
            if self._reader:
                await self._reader
        return code

    async def close(self) -> None:
        """Make sure the process is gone (terminate, then kill)."""
        if self._proc is None:
            return
        if self._proc.returncode is None:
            self.terminate()
            try:
                await self.wait_exit(15)
            except TimeoutError:
                self.kill()
                await self.wait_exit(15)
        elif self._reader:
            await self._reader


# --- numbered hook bursts -------------------------------------------------------------------


MARK = re.compile(r"mark-(\w+)-s(\d+)-e(\d+)\b")


def mark(tag: str, session: int, seq: int) -> str:
    return f"mark-{tag}-s{session:02d}-e{seq:04d}"


def prompt_payload(session_id: str, text: str) -> dict[str, Any]:
    """A UserPromptSubmit as Claude Code sends it (see shared/claude-code/hook-payloads)."""
    return {
        "session_id": session_id,
        "transcript_path": f"/home/dev/.claude/projects/demo/{session_id}.jsonl",
        "cwd": "/home/dev/projects/demo-app",
        "permission_mode": "default",
        "hook_event_name": "UserPromptSubmit",
        "prompt": text,
    }


@dataclass
class Post:
    session: int
    seq: int
    status: int  # 0: no answer (refused, reset, timed out)
    started: float  # time.monotonic()
    seconds: float


@dataclass
class Burst:
    """``sessions`` sessions posting ``per_session`` numbered prompts each, every session in order.

    A poster waits while ``up`` is clear (the test clears it before it kills a bridge and sets
    it once one is ready again) and stops early once ``stop`` is set (for tests that post until
    something has happened, however long that takes); a post that gets no answer is not retried — like Claude Code's
    ``http`` hooks, which fail open — since a retry of a post that was stored but not answered
    would rightly show twice. ``pace`` spaces each session's posts (seconds), for tests where
    hooks must keep arriving through an outage.
    """

    hook_url: str
    sessions: int
    per_session: int
    pace: float = 0.0
    token: str = HOOK_TOKEN
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    posts: list[Post] = field(default_factory=list)
    up: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.session_ids = [str(uuid.uuid4()) for _ in range(self.sessions)]
        self.up.set()
        self._acked = 0
        self._progress = asyncio.Event()

    @property
    def acked(self) -> set[tuple[int, int]]:
        return {(p.session, p.seq) for p in self.posts if p.status == 200}

    @property
    def attempted(self) -> set[tuple[int, int]]:
        return {(p.session, p.seq) for p in self.posts}

    def statuses(self, since: float = 0.0, until: float = float("inf")) -> Counter[int]:
        return Counter(p.status for p in self.posts if since <= p.started < until)

    def ack_seconds(self, since: float = 0.0, until: float = float("inf")) -> list[float]:
        return [p.seconds for p in self.posts if p.status == 200 and since <= p.started < until]

    async def wait_acked(self, count: int, timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout):
            while self._acked < count:
                waiter = self._progress
                await waiter.wait()

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(force_close=True)  # a fresh connection per hook
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            await asyncio.gather(*(self._poster(http, s) for s in range(self.sessions)))

    async def _poster(self, http: aiohttp.ClientSession, session: int) -> None:
        for seq in range(self.per_session):
            await self.up.wait()
            if self.stop.is_set():
                return
            payload = prompt_payload(self.session_ids[session], mark(self.tag, session, seq))
            status = await self.post(http, session, seq, payload)
            if status == 200:
                self._acked += 1
                self._progress.set()
                self._progress = asyncio.Event()
            if self.pace:
                await asyncio.sleep(self.pace)

    async def post(
        self, http: aiohttp.ClientSession, session: int, seq: int, payload: dict[str, Any]
    ) -> int:
        started = time.monotonic()
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            async with http.post(
                f"{self.hook_url}/claude/v1/hooks", json=payload, headers=headers
            ) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError):
            status = 0
        self.posts.append(Post(session, seq, status, started, time.monotonic() - started))
        return status


# --- reading the rooms back -------------------------------------------------------------------


async def join_thread_room(client: MatrixTestClient, session_id: str, timeout: float = 60) -> str:
    """Find the session's room through its alias and join it (the operator is invited)."""
    alias = f"#claude-thread-{session_id.lower()}:localhost"

    async def joined() -> str | None:
        room_id = await client.resolve_alias(alias)
        if room_id is None:
            return None
        try:
            return await client.join(room_id)
        except MatrixRequestError as e:
            if e.status == 403:  # the alias exists a moment before the invite
                return None
            raise

    room: str = await until(joined, f"room {alias}", timeout)
    return room


async def room_marks(client: MatrixTestClient, room_id: str, tag: str) -> list[tuple[int, int]]:
    """The ``(session, seq)`` marks of the room's messages, in timeline order."""
    found = []
    for event in await client.messages(room_id, limit=5000):
        if event.get("type") != "m.room.message":
            continue
        body = event.get("content", {}).get("body", "")
        for m in MARK.finditer(body):
            if m.group(1) == tag:
                found.append((int(m.group(2)), int(m.group(3))))
    return found


def check_room(
    session: int, seen: list[tuple[int, int]], acked: set[tuple[int, int]], attempted: set[Any]
) -> list[str]:
    """Problems with one session's room: missing acknowledged events, duplicates, disorder, or
    events nobody sent. An event posted but not answered may be there (once) or not."""
    problems = []
    seqs = [seq for s, seq in seen if s == session]
    if any(s != session for s, _ in seen):
        problems.append(f"session {session}: events of another session in its room")
    dupes = sorted(seq for seq, n in Counter(seqs).items() if n > 1)
    if dupes:
        problems.append(f"session {session}: shown more than once: {dupes}")
    if seqs != sorted(seqs):
        problems.append(f"session {session}: out of order: {seqs}")
    missing = sorted(seq for s, seq in acked if s == session and seq not in seqs)
    if missing:
        problems.append(f"session {session}: acknowledged but missing: {missing}")
    foreign = sorted(seq for seq in seqs if (session, seq) not in attempted)
    if foreign:
        problems.append(f"session {session}: never sent: {foreign}")
    return problems


async def read_back(
    client: MatrixTestClient, burst: Burst, *, timeout: float = 120.0
) -> dict[int, list[tuple[int, int]]]:
    """Join every session's room and wait until each shows all its acknowledged events; then
    return what each room shows."""
    rooms = {s: await join_thread_room(client, sid) for s, sid in enumerate(burst.session_ids)}
    acked = burst.acked
    seen: dict[int, list[tuple[int, int]]] = {}

    async def complete() -> bool:
        for s, room in rooms.items():
            want = {seq for ss, seq in acked if ss == s}
            if not want <= {seq for _, seq in seen.get(s, [])}:
                seen[s] = await room_marks(client, room, burst.tag)
                if not want <= {seq for _, seq in seen[s]}:
                    return False
        return True

    await until(complete, "every acknowledged event in its room", timeout)
    return seen


def burst_problems(burst: Burst, seen: dict[int, list[tuple[int, int]]]) -> list[str]:
    """``check_room`` over every session of the burst."""
    return [
        problem
        for s in range(len(burst.session_ids))
        for problem in check_room(s, seen[s], burst.acked, burst.attempted)
    ]


async def count(database_url: str, query: str, *args: Any) -> int:
    """One number from a (subprocess) bridge's database, through a connection of our own."""
    if database_url.startswith("postgres"):
        conn = await asyncpg.connect(database_url)
        try:
            return int(await conn.fetchval(query, *args))
        finally:
            await conn.close()
    path = URL(database_url).path

    def read() -> int:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return int(db.execute(re.sub(r"\$\d+", "?", query), args).fetchone()[0])

    return await asyncio.to_thread(read)


async def backlog(database_url: str, received_before_ms: int | None = None) -> int:
    """Hook events still pending (optionally only those received before a time, in ms)."""
    return await count(
        database_url,
        "SELECT COUNT(*) FROM hook_event WHERE state='pending' AND received_at<=$1",
        received_before_ms if received_before_ms is not None else 2**62,
    )


async def until_drained(database_url: str, what: str, timeout: float = 60.0) -> None:
    """Wait until the bridge's outbox has nothing pending."""

    async def drained() -> bool:
        return await backlog(database_url) == 0

    await until(drained, what, timeout)


def env_seconds(name: str, default: float) -> float:
    """A fault's duration, overridable for the long runs docs/reliability.md documents."""
    return float(os.environ.get(name, default))


def report(name: str, **figures: Any) -> None:
    """Print a test's figures (``pytest -s`` shows them) and append them to the JSON-lines file
    ``$CLAUDE_BRIDGE_FIGURES`` when set; docs/reliability.md quotes them."""
    line = {"test": name, **figures}
    print(f"\nFIGURE {json.dumps(line)}")
    path = os.environ.get("CLAUDE_BRIDGE_FIGURES")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(line) + "\n")
