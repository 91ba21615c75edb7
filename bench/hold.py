"""Hold (issue 17, §2): a team's idle sessions held open at once, and what they cost the bridge.

``python -m bench run --only hold``: 10,000 sessions whose threads are seeded into the store (as
``scale`` seeds them: their rooms do not exist in Synapse, creating 10,000 rooms takes Synapse
longer than the benchmark should), each with its background waiter long-polling
(``GET /claude/v1/sessions/{id}/wait``); 1,000 PermissionRequests held at once (20 sessions
with real rooms, 50 each: their prompts are delivered, so an operator can decide them); and 100
active sessions (real rooms) posting tool calls at 5 events/s each. The held connections come
from ``hold_client.py``, a load generator in a process of its own with a raised descriptor
limit. Measured:

- the bridge's RSS and open descriptors with everything held;
- its CPU while idle: nothing posted, nothing delivered, the waiters re-polling as their polls
  run out (first polls spread over ``REPOLL`` s, each poll after a 204 ``REPOLL`` s long: the
  steady state of ``claude-bridge-hook wait`` at its default ``--poll``), with what the
  collector took of the window; a full collection inside it (the one the setup makes due) is
  counted at its long-run share (``_steady``);
- an operator's message to one idle session → that session's waiter answered: the message is
  PUT to the appservice transaction endpoint as Synapse would push it (no Synapse in the path:
  the seeded rooms do not exist there), timed from just before the PUT to the first byte of the
  waiter's answer in the load generator;
- a decision (a ✅ reaction on the prompt, pushed the same way) → the held PermissionRequest
  answered;
- the 100 active sessions' acknowledgement p99 with all of this held, against the same load
  without it (order: without, with, with, without).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from bench.hooks import acknowledgement, gc_pauses, open_quiet_sessions
from bench.mirroring import LiveSession, close_sessions
from bench.stack import HOOK_TOKEN, REPO, Stack, proc_cpu_seconds, proc_status
from bench.stats import Row, latency_summary
from claude_bridge.collector import FULL_MIN_INTERVAL, FULL_SHARE
from claude_bridge.devenv.synapse import die_with_parent
from claude_bridge.shim import WAIT_POLL
from claude_bridge.store import Thread, now_ms


@dataclasses.dataclass(frozen=True)
class HoldParams:
    waiters: int = 10_000
    approval_sessions: int = 20
    approvals_each: int = 50
    active: int = 100
    active_rate: float = 5.0  # events/s per active session
    active_events: int = 30  # per session per repeat
    idle_window: float = 30.0
    messages: int = 200
    decisions: int = 200
    spacing: float = 0.05  # between two injected messages (or decisions)


QUICK_HOLD = HoldParams(waiters=2_000, approval_sessions=5, approvals_each=40, active=20,
                        idle_window=10.0, messages=50, decisions=50)  # fmt: skip
REPOLL = WAIT_POLL  # seconds per long-poll, as claude-bridge-hook wait --poll's default
OPERATOR = "@alice:localhost"


async def seed(stack: Stack, count: int) -> list[tuple[str, str]]:
    """``count`` active threads straight into the store; (session id, room id) each."""
    tag = secrets.token_hex(3)
    now = now_ms()
    columns = [f.name for f in dataclasses.fields(Thread)]
    seeded, rows = [], []
    for i in range(count):
        sid = str(uuid.uuid4())
        room = f"!hold{tag}{i}:{stack.domain}"
        thread = Thread(
            id=sid,  # type: ignore[arg-type]  # UUIDs are their own thread id
            session_id=sid,  # type: ignore[arg-type]
            ghost_mxid=f"@claude-{sid}:{stack.domain}", alias=f"#claude-thread-{sid}:{stack.domain}",
            room_id=room, project_path=f"/home/dev/projects/hold-{i % 50}",
            project_name=f"hold-{i % 50}", title=f"held session {i}", token_name="bench",
            status="active", created_at=now - 60_000, updated_at=now - 60_000,
            space_linked_at=now - 60_000,
        )  # fmt: skip
        rows.append(tuple(getattr(thread, c) for c in columns))
        seeded.append((sid, room))
    placeholders = ",".join(f"${i + 1}" for i in range(len(columns)))
    db = await stack.db()
    async with db.acquire() as conn, conn.transaction():
        await conn.executemany(
            f"INSERT INTO thread ({', '.join(columns)}) VALUES ({placeholders})", rows
        )
    return seeded


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class LoadGenerator:
    """``hold_client.py`` running: its answers arrive as (kind, index) → (monotonic, status)."""

    def __init__(self, stack: Stack, spec: dict[str, Any], workdir: Path) -> None:
        self.spec_path = workdir / "hold-spec.json"
        self.spec_path.write_text(json.dumps({**spec, "host": stack.hook_host,
                                              "port": stack.hook_port, "token": HOOK_TOKEN}))  # fmt: skip
        self.answers: dict[tuple[str, int], tuple[float, int]] = {}
        self.ready: dict[str, Any] | None = None
        self.stats: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._new = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self, timeout: float) -> dict[str, Any]:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.hold_client", str(self.spec_path), cwd=REPO,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=die_with_parent(),
            limit=1 << 20,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())
        async with asyncio.timeout(timeout):
            while self.ready is None:
                await self._wait()
        return self.ready

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            data = json.loads(line)
            if "ready" in data:
                self.ready = data["ready"]
            elif "stats" in data:
                self.stats.put_nowait(data["stats"])
            else:
                self.answers[(data["k"], data["i"])] = (data["t"], data["s"])
            self._new.set()
        self._new.set()

    async def _wait(self) -> None:
        self._new.clear()
        if self._reader is not None and self._reader.done():
            raise RuntimeError("the hold load generator exited")
        await self._new.wait()

    async def answer(self, kind: str, index: int, timeout: float) -> tuple[float, int]:
        async with asyncio.timeout(timeout):
            while (kind, index) not in self.answers:
                await self._wait()
        return self.answers[(kind, index)]

    async def get_stats(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(b"stats\n")
        await self.proc.stdin.drain()
        return await asyncio.wait_for(self.stats.get(), 30)

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            await self._reader


class Injector:
    """Matrix events for the bridge, PUT to its appservice transaction endpoint as Synapse does."""

    def __init__(self, stack: Stack) -> None:
        appservice = stack.config["appservice"]
        self.url = f"{appservice['address']}/_matrix/app/v1/transactions/"
        self.headers = {"Authorization": f"Bearer {appservice['hs_token']}"}
        self.http = aiohttp.ClientSession()
        self.tag = secrets.token_hex(4)
        self.n = 0

    async def push(self, room_id: str, event_type: str, content: dict[str, Any]) -> float:
        """Send one event in one transaction; returns time.monotonic() just before the PUT."""
        self.n += 1
        event = {"event_id": f"$hold{self.tag}-{self.n}", "room_id": room_id, "sender": OPERATOR,
                 "type": event_type, "origin_server_ts": now_ms(), "content": content,
                 "unsigned": {"age": 0}}  # fmt: skip
        started = time.monotonic()
        async with self.http.put(f"{self.url}hold{self.tag}-{self.n}", json={"events": [event]},
                                 headers=self.headers) as r:  # fmt: skip
            if r.status != 200:
                raise RuntimeError(f"transaction answered {r.status}: {await r.text()}")
        return started

    async def close(self) -> None:
        await self.http.close()


async def timed_answers(
    gen: LoadGenerator, kind: str, pushes: list[tuple[int, Any]], spacing: float, timeout: float
) -> tuple[list[float], dict[int, int]]:
    """Run each push (index, coroutine factory) ``spacing`` s apart; ms from each push's start
    to its held connection's answer, and the answer statuses."""
    out: list[float] = []
    statuses: dict[int, int] = {}

    async def one(index: int, push: Any) -> None:
        started = await push()
        answered, status = await gen.answer(kind, index, timeout)
        statuses[status] = statuses.get(status, 0) + 1
        out.append((answered - started) * 1000)

    tasks = []
    for index, push in pushes:
        tasks.append(asyncio.create_task(one(index, push)))
        await asyncio.sleep(spacing)
    await asyncio.gather(*tasks)
    return out, statuses


async def run(stack: Stack, p: HoldParams, wait: float) -> tuple[list[Row], dict[str, Any]]:
    raw: dict[str, Any] = {"params": dataclasses.asdict(p)}
    pid = stack.bridge_pid
    raw["before"] = {"rss_mb": proc_status(pid)["VmRSS"] / 1024, "fds": fd_count(pid)}
    seeded = await seed(stack, p.waiters)
    active = await open_quiet_sessions(stack, p.active, wait * 2)
    asking = await open_quiet_sessions(stack, p.approval_sessions, wait)
    acks: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    phases: list[dict[str, Any]] = raw.setdefault("ack_windows", [])
    gen: LoadGenerator | None = None
    injector = Injector(stack)
    try:
        await settle(stack, wait)
        raw["idle_nothing_held"] = await _idle(stack, None, p.idle_window / 2)
        acks["without"].append(await _ack(stack, active, p, wait, phases))
        # Everything held: waiters with first polls spread over REPOLL s, then the approvals.
        rng = random.Random(17)
        waits = [f"/claude/v1/sessions/{sid}/wait?timeout={rng.uniform(20, 20 + REPOLL):.1f}"
                 f"&since=1" for sid, _ in seeded]  # fmt: skip
        posts, marks = [], []
        for live in asking:
            for n in range(p.approvals_each):
                body, mark = live.session.permission_request(n)
                posts.append(body.decode())
                marks.append(mark)
        gen = LoadGenerator(stack, {"waits": waits, "posts": posts, "repoll": REPOLL},
                            stack.workdir)  # fmt: skip
        held_at = time.monotonic()
        raw["client_ready"] = await gen.start(wait * 3)
        prompts = await _prompts_shown(stack, marks, wait * 3)
        await stack.drain(wait * 2)
        raw["held_after_s"] = round(time.monotonic() - held_at, 1)
        refused = {k: v for k, v in gen.answers.items()}
        if refused:
            raise RuntimeError(f"{len(refused)} held requests answered early: "
                               f"{list(refused.items())[:5]}")  # fmt: skip
        await settle(stack, wait)
        async with stack.profile("hold-idle"):
            raw["idle"] = await _idle(stack, gen, p.idle_window)
        for _ in range(2):
            acks["with"].append(await _ack(stack, active, p, wait, phases))
        # Messages to idle sessions: each wakes its waiter.
        picks = random.Random(3).sample(range(len(seeded)), p.messages)
        await settle(stack, wait)
        async with stack.profile("hold-messages"):
            msg_ms, msg_status = await timed_answers(gen, "w", [
            (i, lambda r=seeded[i][1], i=i: injector.push(
                r, "m.room.message", {"msgtype": "m.text", "body": f"hold message {i}"}))
            for i in picks], p.spacing, wait)  # fmt: skip
        # Decisions: a ✅ on the prompt answers the held PermissionRequest.
        chosen = random.Random(5).sample(range(len(posts)), p.decisions)
        await settle(stack, wait)
        async with stack.profile("hold-decisions"):
            dec_ms, dec_status = await timed_answers(gen, "p", [
            (i, lambda r=prompts[i][0], e=prompts[i][1]: injector.push(
                r, "m.reaction",
                {"m.relates_to": {"rel_type": "m.annotation", "event_id": e, "key": "✅"}}))
            for i in chosen], p.spacing, wait)  # fmt: skip
        raw["after"] = {"rss_mb": proc_status(pid)["VmRSS"] / 1024,
                        "hwm_mb": proc_status(pid)["VmHWM"] / 1024, "fds": fd_count(pid),
                        "client": await gen.get_stats()}  # fmt: skip
        await gen.stop()
        gen = None
        await stack.drain(wait * 3)  # the prompts left undecided are marked answered elsewhere
        acks["without"].append(await _ack(stack, active, p, wait, phases))
    finally:
        if gen is not None:
            await gen.stop()
        await injector.close()
        await close_sessions([*active, *asking])
    raw["acks"] = acks
    raw["messages"] = {**latency_summary(msg_ms), "statuses": msg_status}
    raw["decisions"] = {**latency_summary(dec_ms), "statuses": dec_status}
    return rows(raw, p), raw


async def settle(stack: Stack, timeout: float, quiet: float = 0.25) -> float:
    """Wait until the outbox is drained and the bridge used under ``quiet`` of a core over a
    second (it has finished what the last step left it, e.g. 10,000 closed connections);
    returns the seconds waited (gives up after ``timeout``)."""
    start = time.monotonic()
    await stack.drain(timeout)
    pid = stack.bridge_pid
    while time.monotonic() - start < timeout:
        cpu = proc_cpu_seconds(pid)
        await asyncio.sleep(1.0)
        if proc_cpu_seconds(pid) - cpu < quiet:
            break
    return time.monotonic() - start


async def _ack(
    stack: Stack, sessions: list[LiveSession], p: HoldParams, wait: float, phases: list[Any]
) -> Any:
    await settle(stack, wait)
    gc0 = await gc_pauses(stack)
    started = time.time()
    result = await acknowledgement(stack, sessions, p.active_events, p.active_rate)
    ended = time.time()
    gc1 = await gc_pauses(stack)
    # Wall-clock bounds, to lay a trace of the bridge (a launcher's) beside each repeat, and the
    # collections the bridge ran inside it.
    phases.append({"acks": len(phases), "from": round(started, 3), "to": round(ended, 3),
                   "gc": _gc_delta(gc0, gc1)})  # fmt: skip
    await stack.drain(wait * 2)
    return result


async def _prompts_shown(stack: Stack, marks: list[str], timeout: float) -> list[tuple[str, str]]:
    """Per held PermissionRequest (in ``marks`` order): (room id, the prompt's Matrix event id),
    once every prompt has been delivered."""
    db = await stack.db()
    async with asyncio.timeout(timeout):
        while True:
            rows = await db.fetch(
                "SELECT a.request, t.room_id, MIN(s.event_id) AS event_id FROM approval a "
                "JOIN thread t ON t.id = a.thread_id "
                "JOIN sent_event s ON s.hook_event_id = a.hook_event_id "
                "WHERE a.state = 'pending' GROUP BY a.hook_event_id, a.request, t.room_id"
            )
            found: dict[str, tuple[str, str]] = {}
            for row in rows:
                command = json.loads(row["request"])["tool_input"]["command"]
                found[command.rsplit("/", 1)[1]] = (row["room_id"], row["event_id"])
            if all(m in found for m in marks):
                return [found[m] for m in marks]
            await asyncio.sleep(0.5)


async def _idle(stack: Stack, gen: LoadGenerator | None, window: float) -> dict[str, Any]:
    pid, synapse = stack.bridge_pid, stack.synapse.pids
    before = await gen.get_stats() if gen else {"repolls": 0, "rss_kb": 0}
    gc0 = await gc_pauses(stack)
    cpu0, syn0, t0, wall0 = (
        proc_cpu_seconds(pid),
        sum(proc_cpu_seconds(p) for p in synapse),
        time.monotonic(),
        time.time(),
    )
    await asyncio.sleep(window)
    cpu1, syn1, t1 = (
        proc_cpu_seconds(pid),
        sum(proc_cpu_seconds(p) for p in synapse),
        time.monotonic(),
    )
    after = await gen.get_stats() if gen else before
    gc1 = await gc_pauses(stack)
    status = proc_status(pid)
    collections = _gc_delta(gc0, gc1)
    return {
        "from": round(wall0, 3),  # wall clock, to lay a trace beside
        "window_s": round(t1 - t0, 1),
        "cpu_pct": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
        "synapse_cpu_pct": round(100 * (syn1 - syn0) / (t1 - t0), 2),
        "repolls_per_s": round((after["repolls"] - before["repolls"]) / (t1 - t0), 1),
        "rss_mb": round(status["VmRSS"] / 1024, 1),
        "fds": fd_count(pid),
        "client_rss_mb": round(after["rss_kb"] / 1024, 1),
        "gc": collections,
        **_steady(100 * (cpu1 - cpu0) / (t1 - t0), t1 - t0, collections.get("2")),
    }


def _gc_delta(before: dict[str, list[float]], after: dict[str, list[float]]) -> dict[str, Any]:
    """The collections between two :func:`gc_pauses` snapshots, by generation: count and ms."""
    out = {}
    for gen, (count, seconds) in sorted(after.items()):
        c0, s0 = before.get(gen, [0.0, 0.0])
        out[gen] = {"count": int(count - c0), "ms": round(1000 * (seconds - s0), 1)}
    return out


def _steady(cpu_pct: float, window: float, full: dict[str, Any] | None) -> dict[str, Any]:
    """The idle CPU of the steady state: a full collection inside the window is taken out and
    put back at its long-run share. 11,000 connections opened in half a minute make one due; the
    bridge runs it at a quiet moment, and the next no sooner than 1,000 times its length later
    (``collector.FULL_SHARE``), so a 30 s window that catches it shows it at 30 times its weight
    (seen: 2.90 % with a 444 ms one inside, 1.33–1.43 % without)."""
    if not full or not full["count"]:
        return {"steady_cpu_pct": round(cpu_pct, 2), "full_share_pct": None}
    count, ms = full["count"], full["ms"]
    each = ms / 1000 / count
    share = 100 * each / max(FULL_MIN_INTERVAL, each / FULL_SHARE)
    steady = cpu_pct - 100 * (ms / 1000) / window + share
    return {"steady_cpu_pct": round(steady, 2), "full_share_pct": round(share, 3)}


def _collections(gc: dict[str, Any], where: str = "the window") -> str:
    """'; garbage collections in the window: full 1 (812 ms), middle 5 (14 ms), young 25 (15 ms)'."""
    names = {"2": "full", "1": "middle", "0": "young"}
    parts = [
        f"{names.get(g, g)} {v['count']} ({v['ms']:g} ms)"
        for g, v in sorted(gc.items(), reverse=True)
        if v["count"]
    ]
    return f"; garbage collections in {where}: " + ", ".join(parts) if parts else ""


def _held_windows_gc(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """The collections of the all-held ack windows (the middle two of without, with, with,
    without), summed by generation."""
    out: dict[str, dict[str, float]] = {}
    for window in windows[1:3]:
        for gen, v in window.get("gc", {}).items():
            total = out.setdefault(gen, {"count": 0, "ms": 0.0})
            total["count"] += v["count"]
            total["ms"] = round(total["ms"] + v["ms"], 1)
    return out


def _steady_note(idle: dict[str, Any]) -> str:
    if idle.get("full_share_pct") is None:
        return ""
    return (
        f"; measured {idle['cpu_pct']} %, with the full collection taken out of the window and "
        f"counted at its long-run share ({idle['full_share_pct']:g} %)"
    )


def rows(raw: dict[str, Any], p: HoldParams) -> list[Row]:
    from bench.stats import merge_repeats

    idle, msg, dec = raw["idle"], raw["messages"], raw["decisions"]
    without, with_ = merge_repeats(raw["acks"]["without"]), merge_repeats(raw["acks"]["with"])
    held = f"{p.waiters:,} waiters + {p.waiters and p.approval_sessions * p.approvals_each:,} approvals held"
    return [
        Row("hold.rss", "hold", f"bridge RSS, {held}", idle["rss_mb"], "MB", 300.0, "≤ 300 MB",
            detail={"before": raw["before"], "after": raw["after"]},
            note=f"{raw['before']['rss_mb']:.0f} MB before; peak {raw['after']['hwm_mb']:.0f} MB "
            f"(after the messages and decisions)"),
        Row("hold.fds", "hold", "bridge open file descriptors, all held", idle["fds"], "fds",
            status="info", note=f"{raw['before']['fds']} before"),
        Row("hold.cpu", "hold", f"bridge CPU, idle, {held}", idle["steady_cpu_pct"], "% of a core", 2.0,
            "≤ 2 %", detail=idle,
            note=f"over {idle['window_s']:.0f} s, waiters re-polling at {idle['repolls_per_s']} /s "
            f"({REPOLL:g} s polls); Synapse {idle['synapse_cpu_pct']} %{_collections(idle['gc'])}"
            f"{_steady_note(idle)}"),
        Row("hold.msg.p50", "hold", "operator message → its waiter answered, p50", msg["p50"],
            "ms", status="info", detail=msg,
            note="PUT to the appservice transaction endpoint → first byte of the waiter's answer"),
        Row("hold.msg.p99", "hold", "operator message → its waiter answered, p99", msg["p99"],
            "ms", 50.0, "≤ 50 ms", detail=msg, note=f"{msg['n']} messages, {p.spacing * 1000:.0f} ms apart"),
        Row("hold.decision.p99", "hold", "✅ decision → the held approval answered, p99",
            dec["p99"], "ms", status="info", detail=dec, note=f"p50 {dec['p50']} ms, {dec['n']} decisions"),
        Row("hold.ack.without.p99", "hold",
            f"{p.active} active sessions × {p.active_rate:g} ev/s, nothing held, ack p99",
            without["p99"], "ms", detail=without, note=f"{without['rate']:.0f} ev/s offered"),
        Row("hold.ack.p99", "hold", f"{p.active} active sessions × {p.active_rate:g} ev/s, "
            f"all held, ack p99", with_["p99"], "ms", 1.2 * without["p99"],
            f"≤ 1.2 × nothing held ({1.2 * without['p99']:.2f})", detail=with_,
            note=f"p50 {with_['p50']} ms against {without['p50']} ms"
            f"{_collections(_held_windows_gc(raw['ack_windows']), 'those windows')}"),
    ]  # fmt: skip
