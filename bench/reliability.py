"""How fast the bridge comes back from faults, held to targets: the fault tests' speed figures.

    .venv/bin/python bench/reliability.py [--out FILE] [--only faults|shim] [--shim-runs 10]

The fault tests (``tests/e2e/test_fault_*.py``) assert what must hold on any machine, however
loaded: every acknowledged event shown once and in order, the bridge up throughout, the recovery
paths taken. How *fast* that happens is a speed figure, and speed targets live here: each test
prints its figures (``FIGURE {…}``, see ``tests/e2e/processes.py:report``); this runs those tests
with ``CLAUDE_BRIDGE_FIGURES`` set and holds the figures to the targets in ``FAULT_TARGETS``
(the thresholds the tests asserted before they moved here). It also times the command shim's
bounds, which the unit tests check only by outcome (the server still holding when it exits):
the installed hook command against a bridge that is down, one that never answers and one that
drips its answer, each with ``--timeout 1``.

Run it on a quiet machine, like the rest of ``bench/``; it prints the table and writes the JSON
(default ``bench/results/<date>-reliability.json``). The exit code is 1 when a target is missed.
Loopback only; bounded by the tests' own limits and a 30 s cap per shim run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import report  # noqa: E402
from bench.stats import Row, error_row, latency_summary  # noqa: E402

RESULTS = REPO / "bench" / "results"
SHIM_TIMEOUT = 1.0
"""``--timeout`` of the shim runs: the bound each is held to, plus interpreter start."""


@dataclass(frozen=True)
class Target:
    test: str  # the ``report()`` name in the fault test
    key: str  # the figure
    id: str
    case: str
    unit: str
    target: Callable[[dict[str, Any]], float]  # from the figure line (some depend on its setup)
    text: str


FAULT_TARGETS = [
    Target("homeserver_outage", "ack_p99_ms", "fault.hs.ack_p99", "Synapse down: hook ack, p99",
           "ms", lambda f: 500.0, "≤ 500 ms"),
    Target("homeserver_outage", "first_delivery_after_restart_s", "fault.hs.resumed",
           "Synapse back: first delivery after", "s", lambda f: 5.0,
           "≤ 5 s (delivery's backoff alone: up to 30 s)"),
    Target("database_restart", "refusal_p99_ms", "fault.db.refusal_p99",
           "database down: hook refused (503), p99", "ms", lambda f: 1000.0, "≤ 1 s"),
    Target("database_restart", "matrix_message_stored_after_restart_s", "fault.db.message",
           "database back: a Matrix message sent meanwhile stored after", "s", lambda f: 5.0,
           "≤ 5 s (Synapse's own retry: ≥ 10 s)"),
    Target("hung_send_other_threads", "other_thread_5_prompts_s", "fault.hung.others",
           "one send hung: another thread's 5 prompts delivered in", "s", lambda f: 2.0, "≤ 2 s"),
    Target("hung_send_retried", "delivered_after_s", "fault.hung.retried",
           "one send hung: delivered after (request timeout + retry)", "s",
           lambda f: f["request_timeout_s"] + 4.0, "≤ request timeout + 4 s"),
    Target("hung_threads_healthy_one", "slowest_event_s", "fault.starve.first",
           "16 hung threads: a healthy thread's slowest event", "s", lambda f: 3.0,
           "≤ 3 s (slots' patience 2 s)"),
    Target("hung_threads_healthy_one", "later_events_max_s", "fault.starve.later",
           "16 hung threads: the healthy thread's later events", "s", lambda f: 1.0,
           "≤ 1 s (the patience is not waited again)"),
]  # fmt: skip
FAULT_TESTS = [
    "tests/e2e/test_fault_homeserver.py::test_homeserver_outage_acks_fast_and_drains_in_order",
    "tests/e2e/test_fault_database.py",
    "tests/e2e/test_fault_slow_and_limited.py::test_other_threads_flow_while_a_send_hangs",
    "tests/e2e/test_fault_slow_and_limited.py::test_a_hung_send_times_out_is_retried_and_lands_once",
    "tests/e2e/test_fault_slow_and_limited.py::test_many_hung_threads_do_not_starve_the_others",
]


def fault_rows(figures: list[dict[str, Any]]) -> list[Row]:
    """One row per target: the worst figure of every run of its test (a test may run on both
    stores), all of them in the detail."""
    rows = []
    for t in FAULT_TARGETS:
        lines = [f for f in figures if f.get("test") == t.test and t.key in f]
        if not lines:
            rows.append(error_row(t.id, "faults", t.case, t.unit, t.text, "no figure: see the log"))
            continue
        worst = max(lines, key=lambda f: f[t.key] - t.target(f))
        values = [f[t.key] for f in lines]
        rows.append(
            Row(t.id, "faults", t.case, worst[t.key], t.unit, t.target(worst), t.text,
                detail={"runs": values}, note=f"{len(values)} run(s)")
        )  # fmt: skip
    return rows


def run_fault_tests(workdir: Path) -> tuple[list[dict[str, Any]], int]:
    """The fault tests, as the suite runs them; their figures and pytest's exit code."""
    figures = workdir / "figures.jsonl"
    env = {**os.environ, "CLAUDE_BRIDGE_FIGURES": str(figures)}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *FAULT_TESTS]
    print(f"running {len(FAULT_TESTS)} fault tests (a few minutes) …", flush=True)
    done = subprocess.run(argv, cwd=REPO, env=env, check=False, timeout=1800)
    lines = figures.read_text().splitlines() if figures.exists() else []
    return [json.loads(line) for line in lines if line.strip()], done.returncode


# --- the shim's bounds -------------------------------------------------------------------------

PAYLOAD = json.dumps(
    {"session_id": "3eb5f21d-5dcb-43a8-9ab8-939331f73b6b", "hook_event_name": "Stop",
     "cwd": "/home/dev/projects/demo-app", "transcript_path": "/tmp/none.jsonl"}
).encode()  # fmt: skip
DRIP = b"HTTP/1.1 200 OK\r\nContent-Length: 4000\r\n\r\n" + b"x" * 4000


@contextlib.asynccontextmanager
async def bridge_like(kind: str) -> AsyncIterator[str]:
    """A loopback URL where a bridge is ``down`` (nothing listens), ``hung`` (reads the request,
    never answers) or ``drip`` (answers a byte every 0.1 s, ~7 minutes for the whole)."""

    handlers: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await reader.readuntil(b"\r\n\r\n")
            if kind == "hung":
                await asyncio.sleep(3600)
            for byte in DRIP:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.1)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            handlers.discard(task)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    if kind == "down":
        server.close()
        await server.wait_closed()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


async def shim_wall_ms(url: str, spool: Path) -> float:
    """One run of the installed hook command with ``--timeout 1``: its wall time (ms)."""
    from claude_bridge import installer

    argv = [*installer.fast_shim_argv(), "--url", url, "--spool-dir", str(spool),
            "--timeout", str(SHIM_TIMEOUT)]  # fmt: skip
    env = {**os.environ, "CLAUDE_BRIDGE_TOKEN": "bench-token"}
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(PAYLOAD), 30)
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode != 0 or out != b"{}":
        raise RuntimeError(f"the shim answered rc={proc.returncode} {out[:200]!r}")
    return elapsed


SHIM_CASES = {
    "down": ("bridge down (connection refused): spooled", 1000.0, "≤ 1 s"),
    "hung": ("bridge never answers, --timeout 1", (SHIM_TIMEOUT + 0.5) * 1000, "≤ timeout + 0.5 s"),
    "drip": ("answer dripping a byte / 0.1 s, --timeout 1", (SHIM_TIMEOUT + 0.5) * 1000,
             "≤ timeout + 0.5 s"),
}  # fmt: skip


async def shim_rows(runs: int) -> list[Row]:
    rows = []
    for kind, (case, target, text) in SHIM_CASES.items():
        times = []
        async with bridge_like(kind) as url:
            for _ in range(runs):
                with tempfile.TemporaryDirectory() as spool:
                    times.append(await shim_wall_ms(url, Path(spool)))
        summary = latency_summary(times)
        rows.append(Row(f"shim.bound.{kind}", "shim bounds", f"{case}, max", summary["max"],
                        "ms", target, text, detail=summary))  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--only", choices=["faults", "shim"])
    parser.add_argument("--shim-runs", type=int, default=10)
    args = parser.parse_args()
    if not 1 <= args.shim_runs <= 100:
        parser.error("bounded: 1 ≤ --shim-runs ≤ 100")
    started = time.perf_counter()
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    if args.only != "faults":
        rows += asyncio.run(shim_rows(args.shim_runs))
    if args.only != "shim":
        with tempfile.TemporaryDirectory(prefix="claude-bridge-reliability-") as work:
            figures, code = run_fault_tests(Path(work))
        raw = {"figures": figures, "pytest_exit_code": code}
        rows += fault_rows(figures)
        if code != 0:
            print(f"the fault tests failed (pytest exit code {code}): their figures may be partial")
    now = dt.datetime.now()
    out = args.out or RESULTS / f"{now:%Y%m%d-%H%M%S}-reliability.json"
    meta = {
        "date": now.isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "command": " ".join(["bench/reliability.py", *sys.argv[1:]]),
    }
    report.write(out, meta, rows, raw)
    print("\n" + report.table([r.to_json() for r in rows]))
    print(f"\nwritten to {out}; load average now {meta['loadavg_at_end']}")
    return 0 if all(r.status in ("pass", "ref") for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
