"""Soak: 50 concurrent Claude Code sessions for 5 minutes against a local Synapse + the bridge.

    .venv/bin/python bench/soak.py [--minutes 5] [--sessions 50] [--rate 0.5] [--postgres]

Starts a private Synapse (loopback, SQLite) and the bridge as a subprocess (``claude-bridge run``,
SQLite by default, ``--postgres`` for a fresh database on the local server, dropped afterwards),
then runs ``--sessions`` sessions, each posting a realistic mix built from the captured payloads
(SessionStart, then turns of UserPromptSubmit, tool calls PreToolUse/PostToolUse, streamed
MessageDisplay chunks, Stop, now and then a Notification; SessionEnd at the end) with exponential
think times averaging ``--rate`` events per second per session.

It reports: events acknowledged (200) vs delivered (``hook_event.state='sent'``, must be equal,
none ``failed``), p50/p99 hook acknowledgement latency, the outbox backlog sampled every 5 s, the
bridge's peak RSS (``VmHWM`` of its process) and a spot check of 5 rooms: every event id the bridge
recorded is in the room, and the room holds no ghost message the bridge did not record.

Bounded: load stops after ``--minutes``; draining the backlog is given ``--drain`` seconds; every
request has a timeout; everything listens on and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from claude_bridge.config import parse_config  # noqa: E402
from claude_bridge.devenv.synapse import LocalSynapse, free_port  # noqa: E402
from claude_bridge.registration import build_registration, new_token  # noqa: E402
from tests.matrix_client import user_client  # noqa: E402

PAYLOADS = REPO.parent / "shared" / "claude-code" / "hook-payloads"
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
TOKEN = "soak-hook-secret"


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text())
    return data


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else 0.0


def session_events(session_id: str, rng: random.Random) -> Any:
    """An endless realistic session: a generator of hook inputs."""
    base = {"session_id": session_id, "cwd": "/home/dev/projects/demo-app"}
    yield {**payload("SessionStart"), **base}
    turn = 0
    while True:
        turn += 1
        prompt_id = str(uuid.uuid4())
        common = {**base, "prompt_id": prompt_id}
        yield {**payload("UserPromptSubmit"), **common, "prompt": f"turn {turn}: fix the tests"}
        for call in range(rng.randint(1, 4)):
            use = {"tool_use_id": f"toolu_{uuid.uuid4().hex[:24]}"}
            command = {"command": f"pytest -q tests/test_{turn}_{call}.py", "description": "Run"}
            yield {**payload("PreToolUse"), **common, **use, "tool_input": command}
            out = {"stdout": "." * rng.randint(1, 400) + "\n3 passed", "stderr": ""}
            yield {**payload("PostToolUse"), **common, **use, "tool_input": command,
                   "tool_response": out}  # fmt: skip
        message_id = str(uuid.uuid4())
        chunks = rng.randint(1, 3)
        for index in range(chunks):
            yield {**payload("MessageDisplay"), **common, "message_id": message_id,
                   "index": index, "final": index == chunks - 1,
                   "delta": f"Part {index} of the answer. "}  # fmt: skip
        yield {**payload("Stop"), **common, "last_assistant_message": f"Turn {turn} done."}
        if rng.random() < 0.1:
            yield {**payload("Notification.idle_prompt"), **common}


class Load:
    def __init__(self, url: str, seconds: float, rate: float) -> None:
        self.url = url
        self.seconds = seconds
        self.rate = rate
        self.acked = 0
        self.refused: Counter[str] = Counter()
        self.latencies: list[float] = []

    async def session(self, http: aiohttp.ClientSession, n: int, deadline: float) -> None:
        rng = random.Random(n)
        session_id = str(uuid.uuid4())
        events = session_events(session_id, rng)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        while time.monotonic() < deadline:
            await self.post(http, next(events), headers)
            await asyncio.sleep(
                min(rng.expovariate(self.rate), max(0, deadline - time.monotonic()))
            )
        end = {**payload("SessionEnd"), "session_id": session_id}
        await self.post(http, end, headers)

    async def post(self, http: aiohttp.ClientSession, body: Any, headers: dict[str, str]) -> None:
        started = time.perf_counter()
        try:
            async with http.post(self.url, json=body, headers=headers) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as e:
            self.refused[type(e).__name__] += 1
            return
        if status == 200:
            self.acked += 1
            self.latencies.append((time.perf_counter() - started) * 1000)
        else:
            self.refused[str(status)] += 1


async def db_counts(database: str) -> dict[str, int]:
    if database.startswith("postgres"):
        conn = await asyncpg.connect(database)
        try:
            rows = await conn.fetch("SELECT state, COUNT(*) AS n FROM hook_event GROUP BY state")
        finally:
            await conn.close()
        return {r["state"]: int(r["n"]) for r in rows}
    import sqlite3

    path = database.removeprefix("sqlite:")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        rows = conn.execute("SELECT state, COUNT(*) FROM hook_event GROUP BY state").fetchall()
    return {state: int(n) for state, n in rows}


async def db_rows(database: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    if database.startswith("postgres"):
        conn = await asyncpg.connect(database)
        try:
            return [tuple(r) for r in await conn.fetch(query, *args)]
        finally:
            await conn.close()
    import re
    import sqlite3

    path = database.removeprefix("sqlite:")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        return conn.execute(re.sub(r"\$\d+", "?", query), args).fetchall()


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def spot_check(synapse: LocalSynapse, database: str, rooms: int) -> list[str]:
    """Problems found in ``rooms`` random rooms (empty: all good)."""
    admin = await user_client(synapse, "soakadmin")
    problems = []
    threads = await db_rows(database, "SELECT id, room_id FROM thread WHERE room_id IS NOT NULL")
    try:
        for thread_id, room_id in random.Random(7).sample(threads, min(rooms, len(threads))):
            await admin.join(room_id)
            recorded = {
                r[0]
                for r in await db_rows(
                    database, "SELECT event_id FROM sent_event WHERE thread_id=$1", thread_id
                )
            }
            timeline = await admin.messages(room_id, limit=100_000)
            ghost_msgs = {
                e["event_id"]
                for e in timeline
                if e["sender"].startswith("@claude-") and e["type"] == "m.room.message"
            }
            in_room = {e["event_id"] for e in timeline}
            if recorded - in_room:
                problems.append(f"{thread_id}: {len(recorded - in_room)} recorded events missing")
            if ghost_msgs - recorded:
                problems.append(f"{thread_id}: {len(ghost_msgs - recorded)} unrecorded messages")
    finally:
        await admin.close()
    return problems


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="claude-bridge-soak-"))
    as_port, hook_port = free_port(), free_port()
    synapse = LocalSynapse(work / "synapse")
    database = f"sqlite:{work / 'bridge.db'}"
    if args.postgres:
        name = f"claude_bridge_soak_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(PG_ADMIN)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        database = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    config = {
        "homeserver": {"address": synapse.url, "domain": "localhost"},
        "appservice": {"port": as_port, "address": f"http://127.0.0.1:{as_port}",
                       "as_token": new_token(), "hs_token": new_token()},
        "hooks": {"listen": f"127.0.0.1:{hook_port}", "tokens": {"soak": TOKEN},
                  "new_threads_per_minute": 0},
        "bridge": {"permissions": {"@soakadmin:localhost": "admin"}},
        "database": database,
        "logging": {"level": "INFO", "format": "json"},
    }  # fmt: skip
    registration = work / "registration.yaml"
    YAML().dump(build_registration(parse_config(config)), registration)
    synapse.app_service_config_files = [registration]
    (work / "config.yaml").write_text(json.dumps(config))
    await synapse.start()
    log = (work / "bridge.log").open("wb")
    bridge = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "claude_bridge", "run", "-c", str(work / "config.yaml"),
        cwd=REPO, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
    )  # fmt: skip
    hook_url = f"http://127.0.0.1:{hook_port}/claude/v1/hooks"
    timeout = aiohttp.ClientTimeout(total=30)
    report: dict[str, Any] = {"database": database.split(":")[0], "work": str(work)}
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await wait_ready(http, f"http://127.0.0.1:{hook_port}/health", bridge)
            load = Load(hook_url, args.minutes * 60, args.rate)
            backlog: list[tuple[int, int]] = []
            started = time.monotonic()
            deadline = started + args.minutes * 60
            sampler = asyncio.create_task(sample(database, started, backlog))
            await asyncio.gather(*(load.session(http, n, deadline) for n in range(args.sessions)))
            load_s = time.monotonic() - started
            drain_deadline = time.monotonic() + args.drain
            # The bridge is another process: its backlog can only be polled, from its database.
            while time.monotonic() < drain_deadline:
                if not (await db_counts(database)).get("pending", 0):
                    break
                await asyncio.sleep(1)
            drained_s = time.monotonic() - started - load_s
            sampler.cancel()
        counts = await db_counts(database)
        report.update(
            sessions=args.sessions,
            minutes=args.minutes,
            rate_per_session=args.rate,
            acknowledged=load.acked,
            refused=dict(load.refused),
            delivered=counts.get("sent", 0),
            pending=counts.get("pending", 0),
            failed=counts.get("failed", 0),
            ack_p50_ms=round(percentile(load.latencies, 50), 2),
            ack_p99_ms=round(percentile(load.latencies, 99), 2),
            ack_max_ms=round(max(load.latencies, default=0), 2),
            events_per_s=round(load.acked / load_s, 1),
            drain_after_load_s=round(drained_s, 1),
            backlog_samples=backlog,
            backlog_max=max((b for _, b in backlog), default=0),
            bridge_peak_rss_mib=round(peak_rss_mib(bridge.pid), 1),
            spot_check_problems=await spot_check(synapse, database, 5),
        )
    finally:
        if bridge.returncode is None:
            bridge.terminate()
            await asyncio.wait_for(bridge.wait(), 30)
        log.close()
        await synapse.stop()
        if args.postgres:
            conn = await asyncpg.connect(PG_ADMIN)
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()
    return report


async def wait_ready(
    http: aiohttp.ClientSession, url: str, bridge: Any, timeout: float = 120.0
) -> None:
    """Poll the bridge's /health until it answers 200; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if bridge.returncode is not None:
            raise RuntimeError(f"bridge exited with {bridge.returncode}")
        try:
            async with http.get(url) as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"bridge not ready after {timeout:.0f} s")


async def sample(database: str, started: float, out: list[tuple[int, int]]) -> None:
    while True:
        try:
            pending = (await db_counts(database)).get("pending", 0)
            out.append((round(time.monotonic() - started), pending))
        except Exception as e:  # a busy SQLite file: skip this sample
            print(f"backlog sample skipped: {e}", file=sys.stderr)
        await asyncio.sleep(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--rate", type=float, default=0.5, help="events/s per session (mean)")
    parser.add_argument("--drain", type=float, default=300.0, help="seconds to drain after load")
    parser.add_argument("--postgres", action="store_true", help="bridge on Postgres, not SQLite")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    if not 0 < args.minutes <= 60 or not 0 < args.sessions <= 500 or not 0 < args.rate <= 20:
        parser.error("bounded: --minutes ≤ 60, --sessions ≤ 500, --rate ≤ 20")
    report = asyncio.run(run(args))
    samples = report.pop("backlog_samples")
    print(json.dumps(report, indent=2))
    print("backlog (s → pending):", " ".join(f"{t}:{n}" for t, n in samples))
    if args.json:
        args.json.write_text(json.dumps({**report, "backlog_samples": samples}, indent=2))
    ok = (
        report["acknowledged"] == report["delivered"]
        and not report["failed"]
        and not report["spot_check_problems"]
    )
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
