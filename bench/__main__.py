"""``python -m bench``: run the benchmarks, or compare two result files.

    python -m bench run [--postgres] [--synapse SHAPE] [--quick] [--no-coalesce] [--out FILE]
                        [--only NAME,…] [--profile DIR]
    python -m bench compare OLD.json NEW.json
    python -m bench table RESULT.json          (the Markdown table of docs/benchmarks.md)
    python -m bench profile DIR/*.collapsed.txt

``run`` starts a throwaway Synapse (``--synapse``: see ``bench/synapse_workers.py``) and the
bridge (SQLite, or a fresh Postgres database with ``--postgres``) on loopback, runs every
benchmark below with a time cap each, prints the table and writes it as JSON (default
``bench/results/<date>-<store>[-quick].json``). Bridge figures are
compared with the raw ceiling, i.e. Synapse measured in the same run with the same content,
and raw and bridge measurements alternate so both see the same machine. About 5–10 minutes
(``--quick``: about 2, fewer samples and one repeat: for checking the suite, not for docs/benchmarks.md).

Benchmarks (``--only`` names): latency, throughput, creation, ack, load, burst, control, shim, scale
(scale also reports memory; run it last, after the burst, as the full run does). Only when named:
hold (10,000 idle sessions' waiters and 1,000 approvals held at once; ``bench/hold.py``), curves
(cost against threads in the store, rooms written at once, held connections, with a PNG beside
the JSON; ``bench/curves.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import report
from bench.stats import Row, error_row, merge_repeats, na_row
from bench.synapse_workers import SynapseShape

RESULTS = Path(__file__).resolve().parent / "results"
ALL = ["latency", "throughput", "creation", "ack", "load", "burst", "control", "shim", "scale"]
OPT_IN = ["hold", "curves"]  # run only when named in --only


@dataclass(frozen=True)
class Params:
    repeats: int
    latency_k: int  # idle samples per repeat (raw and bridge)
    seq_n: int  # messages into one room (raw) / one session (bridge)
    conc_n: int  # messages over 10 rooms / 10 sessions
    create_k: int  # rooms per repeat
    ack1_n: int  # events of one session per repeat
    ack50_m: int  # events per session, 50 sessions, per repeat
    burst_n: int
    burst_repeats: int
    control_k: int
    shim_runs: int
    seed: int  # threads in the database for "scale"
    route_cold: int
    route_warm: int
    list_k: int
    load_per: int  # events per session per repeat, 50 sessions thinking 0–100 ms


FULL = Params(
    repeats=3, latency_k=60, seq_n=300, conc_n=500, create_k=8, ack1_n=300, ack50_m=12,
    burst_n=2000, burst_repeats=1, control_k=15, shim_runs=30, seed=10_000, route_cold=10_000,
    route_warm=1000, list_k=50, load_per=100,
)  # fmt: skip
QUICK = Params(
    repeats=1, latency_k=30, seq_n=100, conc_n=200, create_k=4, ack1_n=100, ack50_m=10,
    burst_n=500, burst_repeats=1, control_k=5, shim_runs=10, seed=10_000, route_cold=1000,
    route_warm=300, list_k=20, load_per=40,
)  # fmt: skip
CAPS = {  # seconds per benchmark, set-up included
    "latency": 90, "throughput": 240, "creation": 90, "ack": 360, "load": 420, "burst": 240,
    "control": 60, "shim": 90, "scale": 150, "hold": 900, "curves": 900,
}  # fmt: skip
WAIT = 60.0  # longest wait for any single thing to show up
ACK50_RATE = 5.0  # events/s per session: "a busy session fires several hook events per second"
LOAD_BOUNDS_MS = (1, 5, 10, 25)  # the load row's tail sits between 5 and 25 ms


class Run:
    def __init__(self, stack: Any, params: Params) -> None:
        self.stack = stack
        self.p = params
        self.rows: list[Row] = []
        self.raw: dict[str, Any] = {}
        self.refs: dict[str, float] = {}
        self._raw_side: Any = None
        self._live: dict[str, Any] = {}
        from bench.modes import Modes

        self.modes = Modes(stack, stack.options.postgres)
        self.png: Path | None = None  # where ``curves`` draws its plot

    def add(self, *rows: Row) -> None:
        self.rows.extend(rows)
        for r in rows:
            print("  " + report.table([r.to_json()]).splitlines()[-1], flush=True)

    async def raw_side(self) -> Any:
        if self._raw_side is None:
            from bench.raw import Raw

            self._raw_side = Raw(self.stack)
            await self._raw_side.setup(10)
        return self._raw_side

    async def live(self, key: str, count: int = 1) -> list[Any]:
        """Sessions with rooms alice has joined, reused across repeats."""
        from bench.mirroring import open_session

        if key not in self._live:
            self._live[key] = [await open_session(self.stack, timeout=WAIT) for _ in range(count)]
            self.modes.tracked.extend(self._live[key])
        return list(self._live[key])

    async def close(self) -> None:
        from bench.mirroring import close_sessions

        for sessions in self._live.values():
            await close_sessions(sessions)
        if self._raw_side is not None:
            await self._raw_side.close()

    def _postgres_share(self, m: dict[str, Any]) -> str:
        """The Postgres server's CPU per event, for a note, where anything is on it."""
        options = self.stack.options
        on = [
            name
            for name, yes in (
                ("bridge", options.postgres),
                ("Synapse", options.synapse.database == "postgres"),
            )
            if yes
        ]
        if not on:
            return ""
        return (f", the Postgres server ({' and '.join(on)}): "
                f"{m['postgres_cpu_ms_per_event']:.2f} ms")  # fmt: skip

    async def cpu(self) -> tuple[float, float, float]:
        """CPU seconds so far of the bridge, Synapse (all its processes) and the Postgres
        server (which serves whoever is on Postgres: the bridge, Synapse, the bench's probes)."""
        from bench.stack import postgres_cpu_seconds, proc_cpu_seconds

        return (
            proc_cpu_seconds(self.stack.bridge_pid),
            sum(proc_cpu_seconds(pid) for pid in self.stack.synapse.pids),
            postgres_cpu_seconds(),
        )

    # -- benchmarks --------------------------------------------------------------------------

    async def latency(self) -> None:
        from bench.mirroring import hook_to_room

        raw = await self.raw_side()
        (live,) = await self.live("latency")
        raw_runs, bridge_runs = [], []
        for _ in range(self.p.repeats):
            await self.stack.drain(WAIT)
            raw_runs.append(await raw.latency(self.p.latency_k, WAIT))
            await self.stack.drain(WAIT)
            bridge_runs.append(await hook_to_room(self.stack, live, self.p.latency_k, WAIT))
        r = merge_repeats([x["seen"] for x in raw_runs])
        b = merge_repeats([x["seen"] for x in bridge_runs])
        self.raw["latency"] = {"raw": raw_runs, "bridge": bridge_runs}
        self.add(
            Row("raw.send.p50", "raw ceiling", "send → readable, idle, p50", r["p50"], "ms",
                detail={**r, "put": merge_repeats([x["put"] for x in raw_runs])}),
            Row("raw.send.p99", "raw ceiling", "send → readable, idle, p99", r["p99"], "ms",
                detail=r),
            Row("hook_room.p50", "hook → room", "idle, p50", b["p50"], "ms", r["p50"] + 10,
                f"≤ raw p50 + 10 ms ({r['p50'] + 10:.1f})", detail=b),
            Row("hook_room.p99", "hook → room", "idle, p99", b["p99"], "ms", 2 * r["p99"],
                f"≤ 2 × raw p99 ({2 * r['p99']:.1f})", detail=b),
        )  # fmt: skip

    async def throughput(self) -> None:
        from bench.mirroring import sustained

        raw = await self.raw_side()
        one = await self.live("one")
        ten = await self.live("ten", 10)
        runs: dict[str, list[dict[str, float]]] = {"raw1": [], "br1": [], "raw10": [], "br10": []}
        cpu: dict[str, list[float]] = {"br1": [], "br10": []}
        for _ in range(self.p.repeats):
            await self.stack.drain(WAIT)
            runs["raw1"].append(await raw.sequential(self.p.seq_n, WAIT))
            await self.stack.drain(WAIT)
            c0 = await self.cpu()
            runs["br1"].append(await sustained(self.stack, one, self.p.seq_n, WAIT * 2))
            cpu["br1"].append((await self.cpu())[0] - c0[0])
            await self.stack.drain(WAIT)
            runs["raw10"].append(await raw.concurrent(self.p.conc_n, WAIT))
            await self.stack.drain(WAIT)
            c0 = await self.cpu()
            runs["br10"].append(await sustained(self.stack, ten, self.p.conc_n, WAIT * 2))
            cpu["br10"].append((await self.cpu())[0] - c0[0])
        m = {k: merge_repeats(v) for k, v in runs.items()}
        self.raw["throughput"] = {**runs, "bridge_cpu_s": cpu}
        per_event = {
            k: round(
                1000 * sorted(v)[len(v) // 2] / (self.p.seq_n if k == "br1" else self.p.conc_n), 3
            )
            for k, v in cpu.items()
        }
        self.add(
            Row("raw.seq.rate", "raw ceiling", "sequential, 1 room", m["raw1"]["rate"], "msg/s",
                better="higher", detail=m["raw1"]),
            Row("raw.conc10.rate", "raw ceiling", "concurrent, 10 rooms", m["raw10"]["rate"],
                "msg/s", better="higher", detail=m["raw10"]),
            Row("sustained.1.rate", "sustained mirroring", "1 session", m["br1"]["rate"], "ev/s",
                0.9 * m["raw1"]["rate"], f"≥ 0.9 × raw sequential ({0.9 * m['raw1']['rate']:.1f})",
                better="higher", detail={**m["br1"], "bridge_cpu_ms_per_event": per_event["br1"]}),
            Row("sustained.10.rate", "sustained mirroring", "10 sessions", m["br10"]["rate"],
                "ev/s", 0.9 * m["raw10"]["rate"],
                f"≥ 0.9 × raw concurrent ({0.9 * m['raw10']['rate']:.1f})", better="higher",
                detail={**m["br10"], "bridge_cpu_ms_per_event": per_event["br10"]}),
        )  # fmt: skip

    async def creation(self) -> None:
        from bench.mirroring import thread_creation

        raw = await self.raw_side()
        raw_runs, bridge_runs = [], []
        for _ in range(self.p.repeats):
            await self.stack.drain(WAIT)
            raw_runs.append(await raw.create_room(self.p.create_k, WAIT))
            bridge_runs.append(await thread_creation(self.stack, self.p.create_k, WAIT))
        r = merge_repeats([x["invite_seen"] for x in raw_runs])
        c = merge_repeats([x["create"] for x in raw_runs])
        b = merge_repeats([x["invite_seen"] for x in bridge_runs])
        self.raw["creation"] = {"raw": raw_runs, "bridge": bridge_runs}
        self.add(
            Row("raw.create.p50", "raw ceiling", "createRoom → invite readable, p50", r["p50"],
                "ms", detail={**r, "createRoom_call": c}),
            Row("creation.p50", "thread creation", "first hook → room + invites, p50", b["p50"],
                "ms", 1.5 * r["p50"], f"≤ 1.5 × raw create ({1.5 * r['p50']:.0f})", detail=b),
        )  # fmt: skip

    async def ack(self) -> None:
        from bench.floors import Floors
        from bench.hooks import (
            ack_histogram,
            acknowledgement,
            add_hist,
            hist_delta,
            open_quiet_sessions,
            share,
        )
        from bench.mirroring import close_sessions

        cases = (
            # key, sessions, events per session, events/s per session (None: back to back)
            ("1", 1, self.p.ack1_n, None),
            ("50", 50, self.p.ack50_m, ACK50_RATE),
            ("50sat", 50, self.p.ack50_m, None),
        )
        opened: dict[int, list[Any]] = {}
        try:
            for key, count, per, rate in cases:
                if count not in opened:
                    opened[count] = await open_quiet_sessions(self.stack, count, WAIT)
                sessions = opened[count]
                runs: dict[str, list[dict[str, Any]]] = {m: [] for m in self.modes.all}
                hists: dict[str, dict[str, float]] = {m: {} for m in self.modes.all}
                floors = None
                if key == "50":  # what the acknowledgement cannot go below, same load
                    body = sessions[0].session.pair()[0][0]
                    floors = Floors(self.stack.database_url, self.stack.workdir, body)
                    await floors.open()
                # The saturation case is informative only: once is enough.
                repeats = 1 if key == "50sat" else self.p.repeats
                for _, mode in self.modes.order(repeats):
                    await self.modes.use(mode, sessions, WAIT * 2)
                    await self.stack.drain(WAIT * 2)
                    hist0 = await ack_histogram(self.stack)
                    async with self.stack.profile(f"ack{key}-{mode}"):
                        load = acknowledgement(self.stack, sessions, per, rate)
                        if floors is None:
                            runs[mode].append(await load)
                        else:
                            async with floors.running():
                                runs[mode].append(await load)
                    add_hist(hists[mode], hist_delta(hist0, await ack_histogram(self.stack)))
                if floors is not None:
                    await floors.close()
                    self.add(*floors.rows())
                for mode in self.modes.all:
                    self.add(
                        self._ack_row(key, mode, merge_repeats(runs[mode]), share(hists[mode]))
                    )
                self.raw[f"ack{key}"] = {
                    m: {"runs": runs[m], "server_side": share(hists[m])} for m in self.modes.all
                }
            await self.stack.drain(WAIT * 2)
        finally:
            for sessions in opened.values():
                await close_sessions(sessions)
        await self.modes.restore(WAIT)

    def _ack_row(self, key: str, mode: str, m: dict[str, Any], server: str) -> Row:
        from bench.modes import GROUP, case, row_id

        # Today's path (group commit off) is a reference beside the figure under target.
        info = {} if mode == GROUP else {"status": "info"}
        if key == "1":
            return Row(row_id("ack.1.p99", mode), "hook acknowledgement",
                       case("1 session, back to back, p99", mode), m["p99"], "ms", 5.0,
                       "p99 ≤ 5 ms", detail=m, note=server, **info)  # fmt: skip
        if key == "50":
            return Row(row_id("ack.50.p99", mode), "hook acknowledgement",
                       case(f"50 sessions × {ACK50_RATE:g} ev/s, p99", mode), m["p99"], "ms", 5.0,
                       "p99 ≤ 5 ms", detail=m,
                       note=f"{m['rate']:.0f} ev/s offered while delivering; {server}",
                       **info)  # fmt: skip
        return Row(row_id("ack.50sat.rate", mode), "hook acknowledgement",
                   case("50 sessions back to back: capacity", mode), m["rate"], "ev/s",
                   status="info", better="higher", detail=m,
                   note=f"p50 {m['p50']:.1f} ms, p99 {m['p99']:.1f} ms (queueing)")  # fmt: skip

    async def load(self) -> None:
        from bench import load
        from bench.hooks import ack_histogram, add_hist, hist_delta, open_quiet_sessions, share
        from bench.mirroring import close_sessions
        from bench.modes import GROUP, case, row_id

        sessions = await open_quiet_sessions(self.stack, load.SESSIONS, WAIT)
        (probe,) = await self.live("latency")
        raw = await self.raw_side()
        floors: list[dict[str, Any]] = []
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in self.modes.all}
        hook_room: dict[str, list[dict[str, Any]]] = {m: [] for m in self.modes.all}
        raw_seen: dict[str, list[dict[str, Any]]] = {m: [] for m in self.modes.all}
        # How much of the tail is inside the bridge's handler (its own histogram starts when the
        # handler does) and how much before it: waiting to be read, or for a core.
        hists: dict[str, dict[str, float]] = {m: {} for m in self.modes.all}
        try:
            async with load.null_server() as port:
                for repeat, mode in self.modes.order(self.p.repeats):
                    await self.modes.use(mode, [*sessions, probe], WAIT * 2)
                    await self.stack.drain(WAIT * 2)
                    bodies = load.bodies_for(sessions, self.p.load_per)
                    if len(floors) == repeat:  # once per repeat, just before the bridge
                        floors.append(await load.floor(port, bodies, seed=repeat))
                    work = load.think_time_load([s.conn for s in sessions], bodies, seed=repeat)
                    hist0 = await ack_histogram(self.stack)
                    async with self.stack.profile(f"load-{mode}"):
                        acks, hook, rawp = await load.with_probes(
                            self.stack, work, probe, raw, WAIT
                        )
                    add_hist(hists[mode], hist_delta(hist0, await ack_histogram(self.stack)))
                    runs[mode].append(acks)
                    hook_room[mode].append(hook)
                    raw_seen[mode].append(rawp)
                    await self.stack.drain(WAIT * 4)
        finally:
            await close_sessions(sessions)
        own = {m: share(hists[m], LOAD_BOUNDS_MS) for m in self.modes.all}
        self.raw["load"] = {
            "floor": floors,
            "ack": runs,
            "hook_room": hook_room,
            "raw": raw_seen,
            "server_side": own,
        }
        f = merge_repeats(floors)
        shape = f"{load.SESSIONS} sessions, think 0–{load.THINK_MAX * 1000:.0f} ms"
        self.add(
            Row("load.floor.p99", "acknowledgement under load",
                f"{shape}: do-nothing aiohttp server, p99", f["p99"], "ms", detail=f,
                note=f"the load generator's floor; {f['rate']:.0f} ev/s"),
        )  # fmt: skip
        for mode in self.modes.all:
            m, h, r = (merge_repeats(x[mode]) for x in (runs, hook_room, raw_seen))
            info = {} if mode == GROUP else {"status": "info"}
            self.add(
                Row(row_id("load.ack.p99", mode), "acknowledgement under load",
                    case(f"{shape}, while delivering, p99", mode), m["p99"], "ms",
                    f["p99"] + 5, f"≤ floor p99 + 5 ms ({f['p99'] + 5:.1f})", detail=m,
                    note=f"{m['rate']:.0f} ev/s offered; {own[mode]}", **info),
                Row(row_id("load.raw.p50", mode), "acknowledgement under load",
                    case("raw send → readable during the load, p50", mode), r["p50"], "ms",
                    detail=r),
                Row(row_id("load.hook_room.p50", mode), "acknowledgement under load",
                    case("hook → room during the load, p50", mode), h["p50"], "ms",
                    r["p50"] + 10, f"≤ raw p50 + 10 ms ({r['p50'] + 10:.1f})", detail=h,
                    **info),
            )  # fmt: skip
        await self.modes.restore(WAIT)

    async def burst(self) -> None:
        from bench import load
        from bench.floors import Floors
        from bench.hooks import burst
        from bench.modes import GROUP, case, row_id
        from bench.payloads import Session, new_tag

        floor_session, bodies = Session(new_tag()), list[bytes]()
        while len(bodies) < self.p.burst_n:
            bodies.extend(body for body, _ in floor_session.pair())
        async with load.null_server() as port:
            floor = await load.null_burst(port, bodies[: self.p.burst_n])
        # The other part of a request's floor: its commit, with the bridge idle.
        await self.stack.drain(WAIT)
        floors = Floors(self.stack.database_url, self.stack.workdir, bodies[0])
        await floors.open()
        try:
            store = await floors.serial(self.p.burst_n // 2)
        finally:
            await floors.close()
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in self.modes.all}
        for _, mode in self.modes.order(self.p.burst_repeats):
            await self.modes.use(mode, [], WAIT)
            async with self.stack.profile(f"burst-{mode}"):
                await self.stack.drain(WAIT)
                c0 = await self.cpu()
                result = await burst(self.stack, self.p.burst_n, 90)
                c1 = await self.cpu()
                result["bridge_cpu_ms_per_event"] = round(
                    1000 * (c1[0] - c0[0]) / self.p.burst_n, 3
                )
                result["synapse_cpu_ms_per_event"] = round(
                    1000 * (c1[1] - c0[1]) / self.p.burst_n, 3
                )
                result["postgres_cpu_ms_per_event"] = round(
                    1000 * (c1[2] - c0[2]) / self.p.burst_n, 3
                )
                runs[mode].append(result)
        self.raw["burst"] = {**runs, "floor": floor, "store": store}
        n = self.p.burst_n
        # aiohttp answers one connection's requests one after another, each after its commit:
        # no bridge gets one connection past one over (HTTP alone + commit alone).
        ceiling = 1 / (1 / floor["ack_rate"] + 1 / store["rate"])
        self.add(
            Row("burst.floor", "burst", f"{n} events on one connection, do-nothing aiohttp server",
                floor["ack_rate"], "ev/s", better="higher", detail=floor,
                note=f"the floor of one connection: aiohttp answers its requests one after "
                f"another; one at a time (no pipelining) {floor['sequential_rate']:.0f} ev/s"),
            Row("burst.store", "burst", f"{n // 2} durable INSERTs one after another, the store "
                "alone", store["rate"], "ev/s", better="higher", detail=store,
                note=f"no bridge, no HTTP (p50 {store['p50']:.2f} ms); with the do-nothing "
                f"server's rate, one connection with a commit per request tops out at "
                f"{ceiling:,.0f} ev/s"),
        )  # fmt: skip
        for mode in self.modes.all:
            m = merge_repeats(
                [{k: v for k, v in r.items() if isinstance(v, int | float)} for r in runs[mode]]
            )
            info = {} if mode == GROUP else {"status": "info"}
            self.add(
                Row(row_id("burst.ack_rate", mode), "burst",
                    case(f"{n} events, 1 session: acknowledged", mode), m["ack_rate"], "ev/s",
                    2000.0, "≥ 2,000/s", better="higher",
                    detail={**m, "ack_in_pipeline": runs[mode][-1]["ack_in_pipeline"]},
                    **info),
            )  # fmt: skip
            if mode != GROUP:
                continue
            self.add(
                Row("burst.cpu", "burst", "bridge CPU per mirrored event",
                    m["bridge_cpu_ms_per_event"], "ms", status="info", detail=m,
                    note=f"Synapse: {m['synapse_cpu_ms_per_event']:.1f} ms CPU per event"
                    + self._postgres_share(m) +
                    " (CPU time is robust to a busy machine; wall times are not)"),
                Row("burst.lag", "burst", "room catch-up after the last ack", m["catch_up_lag_s"],
                    "s", status="info",
                    note=f"{m['messages']:.0f} messages for {n} events, {m['room_rate']:.0f} ev/s "
                    f"into the room; {m['markers_seen']:.0f}/{n} events visible",
                    detail=m),
            )  # fmt: skip
        await self.modes.restore(WAIT)

    async def control(self) -> None:
        from bench.control import matrix_to_claude

        result = await matrix_to_claude(self.stack, self.p.control_k, WAIT)
        self.raw["control"] = result
        if result.get("timeout"):
            if not result.get("implemented"):
                self.add(
                    na_row(
                        "control.p50",
                        "Matrix → Claude",
                        "txn stored → hook answer",
                        "ms",
                        "≤ 50 ms",
                        "n/a (not implemented: no responder in app.py)",
                    )
                )
                return
            self.add(
                error_row(
                    "control.p50",
                    "Matrix → Claude",
                    "txn stored → hook answer",
                    "ms",
                    "≤ 50 ms",
                    "the message never came back in a hook answer (5 s)",
                )
            )
            return
        t = result["from_txn"] or {}
        s = result["from_send"]
        self.add(
            Row("control.p50", "Matrix → Claude", "txn stored → next hook answer, p50",
                t.get("p50"), "ms", 50.0, "≤ 50 ms",
                note=f"from alice's send: p50 {s['p50']:.1f} ms, p99 {s['p99']:.1f} ms; "
                f"hooks polled every 5 ms", detail={"from_txn": t, "from_send": s}),
        )  # fmt: skip

    async def shim(self) -> None:
        from bench.mirroring import post_ok
        from bench.payloads import Session, new_tag
        from bench.shim_vs_curl import CONSOLE, INSTALLED, measure
        from bench.stack import HOOK_TOKEN
        from bench.stats import latency_summary

        session = Session(new_tag())
        conn = self.stack.hook_connection()
        try:
            await post_ok(conn, session.session_start())
        finally:
            await conn.close()
        await self.stack.drain(WAIT)
        body, _ = session.post(0)
        times = await asyncio.to_thread(
            measure, self.stack.hook_url, HOOK_TOKEN, self.p.shim_runs, body
        )
        await self.stack.drain(WAIT)
        summary = {name: latency_summary(ts) for name, ts in times.items()}
        self.raw["shim"] = summary
        curl = summary.get("curl")
        # What Claude Code actually runs is the command install-hooks writes.
        shim = summary.get(INSTALLED)
        console = summary.get(CONSOLE)
        if curl is None or shim is None:
            self.add(na_row("shim.median", "command shim", "wall time per call", "ms",
                            "≤ 1.5 × curl", "curl or the shim is missing"))  # fmt: skip
            return
        self.add(
            Row("shim.curl.median", "command shim", "curl, same POST, median", curl["p50"], "ms",
                detail=curl),
            Row("shim.median", "command shim", "installed hook command, median", shim["p50"], "ms",
                1.5 * curl["p50"], f"≤ 1.5 × curl ({1.5 * curl['p50']:.1f})", detail=shim,
                note=f"claude-bridge-hook console script: {console['p50']:.1f} ms" if console else ""),
        )  # fmt: skip

    async def scale(self) -> None:
        from bench import scale

        sessions, seconds = await scale.seed_threads(self.stack, self.p.seed)
        async with self.stack.profile("route"):
            routed = await scale.route_cold_and_warm(
                self.stack, sessions, self.p.route_cold, self.p.route_warm
            )
        drain_start = time.perf_counter()
        await self.stack.drain(CAPS["scale"] - 30)
        drained = time.perf_counter() - drain_start
        listed = await scale.list_threads(self.stack, self.p.list_k)
        mem = scale.memory(self.stack)
        self.raw["scale"] = {"seed_seconds": seconds, "route": routed, "list": listed,
                             "drain_after_route_s": drained, "memory": mem}  # fmt: skip
        threads = await (await self.stack.db()).fetchval("SELECT COUNT(*) FROM thread")
        if listed.get("implemented"):
            self.add(Row("scale.list.p50", "scale", f"{threads:,} threads: GET /claude/v1/threads, p50",
                         listed["p50"], "ms", 20.0, "≤ 20 ms", detail=listed))  # fmt: skip
        else:
            self.add(na_row("scale.list.p50", "scale", "GET /claude/v1/threads", "ms", "≤ 20 ms",
                            "n/a (not implemented: 404)"))  # fmt: skip
        cold, warm = routed["cold"], routed["warm"]
        self.add(
            Row("scale.route.p50", "scale",
                "route an event to an existing thread (first since start), p50", cold["p50"],
                "ms", 2.0, "≤ 2 ms", detail=cold,
                note=f"{cold['n']} threads; p99 {cold['p99']} ms; delivery drained in {drained:.1f} s"),
            Row("scale.route_warm.p50", "scale", "route an event to an existing thread (again), p50",
                warm["p50"], "ms", 2.0, "≤ 2 ms", detail=warm, note=f"p99 {warm['p99']} ms"),
            Row("memory.rss", "memory", f"bridge RSS, {threads:,} threads, after the burst",
                round(mem["rss_mb"], 1), "MB", 150.0, "≤ 150 MB",
                detail={k: round(v, 1) for k, v in mem.items()},
                note=f"peak (VmHWM) {mem['hwm_mb']:.0f} MB; at start {self.raw.get('rss_at_start_mb', 0):.0f} MB"),
        )  # fmt: skip

    async def curves(self) -> None:
        from bench import curves

        assert self.png is not None
        rows, raw = await curves.run(self.stack, WAIT, self.png)
        self.raw["curves"] = raw
        self.add(*rows)

    async def hold(self) -> None:
        from bench import hold

        params = hold.QUICK_HOLD if self.p is QUICK else hold.HoldParams()
        rows, raw = await hold.run(self.stack, params, WAIT)
        self.raw["hold"] = raw
        self.add(*rows)


ROW_IDS = {  # for error rows when a benchmark fails before producing its rows
    "latency": [("hook_room.p50", "hook → room", "idle")],
    "throughput": [("sustained.1.rate", "sustained mirroring", "1 and 10 sessions")],
    "creation": [("creation.p50", "thread creation", "first hook → room")],
    "ack": [("ack.p99", "hook acknowledgement", "1 and 50 sessions")],
    "load": [("load.ack.p99", "acknowledgement under load", "50 sessions, think 0–100 ms")],
    "burst": [("burst.ack_rate", "burst", "acknowledged")],
    "control": [("control.p50", "Matrix → Claude", "next hook answer")],
    "shim": [("shim.median", "command shim", "wall time per call")],
    "scale": [("scale.route.p50", "scale", "10,000 threads")],
    "hold": [("hold.msg.p99", "hold", "10,000 waiters held")],
    "curves": [("curves.store.1000", "cost curves", "1k–100k threads, 1–100 rooms, 1k–10k held")],
}


async def run(args: argparse.Namespace) -> int:
    from bench.stack import (
        Noise,
        Stack,
        StackOptions,
        git_revision,
        machine,
        proc_status,
        tool_versions,
    )

    params = QUICK if args.quick else FULL
    selected = ALL if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = set(selected) - set(ALL + OPT_IN)
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}; "
              f"known: {', '.join(ALL + OPT_IN)}")  # fmt: skip
        return 2
    store = "postgres" if args.postgres else "sqlite"
    # The bench's own config overrides for the bridge (recorded as such, not as dirt).
    bridge_env = {"CLAUDE_BRIDGE__BRIDGE__MIRROR__COALESCE_LINES": "1"} if args.no_coalesce else {}
    now = dt.datetime.now()
    tags = ("-quick" if args.quick else "") + ("-nocoalesce" if args.no_coalesce else "")
    if args.synapse.database != "sqlite":
        tags += f"-synapse-{args.synapse}".replace("=", "")
    out = args.out or RESULTS / f"{now:%Y%m%d-%H%M%S}-{store}{tags}.json"
    meta: dict[str, Any] = {
        "date": now.isoformat(timespec="seconds"),
        "store": store,
        "quick": args.quick,
        "coalesce": not args.no_coalesce,
        "synapse": str(args.synapse),
        "bridge_env": bridge_env,
        "params": params.__dict__,
        "machine": machine(),
        "git": git_revision(),
        "versions": tool_versions(),
        "profiled": args.profile is not None,
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
    }
    if args.note:
        meta["note"] = args.note
    print(f"claude-bridge benchmarks: {store}, {'quick' if args.quick else 'full'}; "
          f"{meta['machine']['nproc']} × {meta['machine']['cpu']}, "
          f"load {meta['machine']['loadavg_at_start']}", flush=True)  # fmt: skip
    if meta["git"]["dirty"]:
        print("NOTE: the code that runs is not the commit's (recorded as dirty in the results):\n  "
              + "\n  ".join(meta["git"]["dirty_because"]), flush=True)  # fmt: skip
    started = time.perf_counter()
    stack = Stack(
        StackOptions(
            postgres=args.postgres,
            keep=args.keep,
            profile_dir=args.profile,
            bridge_env=bridge_env,
            synapse=args.synapse,
        )
    )
    run_ = Run(stack, params)
    run_.png = Path(out).with_suffix(".png")
    try:
        await stack.start()
        print(f"stack up in {time.perf_counter() - started:.1f} s (work dir {stack.workdir})")
        run_.raw["rss_at_start_mb"] = proc_status(stack.bridge_pid).get("VmRSS", 0) / 1024
        for name in ALL + OPT_IN:
            if name not in selected:
                continue
            print(f"\n[{name}] (cap {CAPS[name]} s)", flush=True)
            t0 = time.perf_counter()
            bench: Callable[[], Awaitable[None]] = getattr(run_, name)
            noise = Noise([stack.bridge_pid, *stack.synapse.pids])
            noise.start()
            try:
                async with asyncio.timeout(CAPS[name]):
                    await bench()
            except Exception as e:  # a failing benchmark must not take the others down
                kind = "timed out" if isinstance(e, TimeoutError) else f"{type(e).__name__}: {e}"
                print(f"  {name} failed: {kind}")
                if not isinstance(e, TimeoutError):
                    traceback.print_exc()
                for rid, bench_name, case in ROW_IDS[name]:
                    if not any(r.benchmark == bench_name for r in run_.rows):
                        run_.add(error_row(rid, bench_name, case, "", "", f"{name}: {kind}"[:200]))
                with contextlib.suppress(Exception):
                    await stack.drain(30)
            busy = await noise.stop()
            run_.raw.setdefault("noise", {})[name] = busy
            print(
                f"  ({time.perf_counter() - t0:.1f} s; other processes used "
                f"{busy['others_cores']} cores, load {busy['loadavg_1m']})",
                flush=True,
            )
    finally:
        meta["seconds"] = round(time.perf_counter() - started, 1)
        meta["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        with contextlib.suppress(Exception):
            meta["bridge_log_problems"] = stack.bridge_log_problems()[:50]
        with contextlib.suppress(Exception):
            await run_.close()
        await stack.stop()
    report.write(Path(out), meta, run_.rows, run_.raw)
    print("\n" + report.table([r.to_json() for r in run_.rows]))
    noise = run_.raw.get("noise", {})
    if noise:
        print(
            "\nother processes' CPU use while each benchmark ran (cores of "
            f"{meta['machine']['nproc']}; > 0.2 means noisy figures):"
        )
        print("  " + ", ".join(f"{k} {v['others_cores']}" for k, v in noise.items()))
    problems = meta.get("bridge_log_problems") or []
    if problems:
        print(
            f"\nthe bridge logged {len(problems)} warnings/errors (see the JSON, meta.bridge_log_problems)"
        )
    print(f"\nwritten to {out} ({meta['seconds']} s); "
          f"load average now {meta['loadavg_at_end']} — figures from a busy machine are noisy")  # fmt: skip
    if args.profile:
        from bench.profile import report as profile_report

        summarize_profiles(Path(args.profile), profile_report)
        print(f"profiles: {args.profile}/*.collapsed.txt (summaries in *.top.txt)")
    return 0


def summarize_profiles(directory: Path, summarize: Callable[[Path, int], str]) -> None:
    for f in sorted(directory.glob("*.collapsed.txt")):
        f.with_suffix("").with_suffix(".top.txt").write_text(summarize(f, 15))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the benchmarks")
    r.add_argument(
        "--postgres", action="store_true", help="the bridge on Postgres (127.0.0.1:5432)"
    )
    r.add_argument("--quick", action="store_true", help="fewer samples, one repeat (~2 min)")
    r.add_argument(
        "--synapse", type=SynapseShape.parse, default=SynapseShape(), metavar="SHAPE",
        help="sqlite (default: one process), postgres (one process on Postgres) or persisters=N "
        "(Postgres, Redis on 127.0.0.1:6379, N event-persister workers)",
    )  # fmt: skip
    r.add_argument("--out", type=Path, help="JSON file to write")
    r.add_argument("--only", help=f"comma-separated subset of: {','.join(ALL + OPT_IN)}")
    r.add_argument("--profile", type=Path, metavar="DIR",
                   help="record py-spy profiles of the bridge per phase into DIR (slows it down)")  # fmt: skip
    r.add_argument("--keep", action="store_true", help="keep the work dir (logs, databases)")
    r.add_argument("--note", help="a note kept in the results (e.g. 'shared machine')")
    r.add_argument("--no-coalesce", action="store_true",
                   help="the bridge with coalescing off (one message per event, as the raw rows)")  # fmt: skip
    c = sub.add_parser("compare", help="ratios between two result files")
    c.add_argument("old", type=Path)
    c.add_argument("new", type=Path)
    t = sub.add_parser("table", help="a result file as a Markdown table (docs/benchmarks.md)")
    t.add_argument("file", type=Path)
    p = sub.add_parser("profile", help="summarise py-spy collapsed stacks")
    p.add_argument("files", nargs="+")
    args, rest = parser.parse_known_args(argv)
    if args.command == "compare":
        print(report.compare(args.old, args.new))
        return 0
    if args.command == "table":
        print(report.markdown(args.file))
        return 0
    if args.command == "profile":
        from bench.profile import main as profile_main

        return profile_main([*args.files, *rest])
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
