"""Where an acknowledgement's time goes inside the bridge: a launcher.

    BENCH_HANDLER_TIMING=/tmp/timing.jsonl BENCH_BRIDGE_LAUNCHER=$PWD/bench/handler_timing.py \\
        python -m bench run --postgres --only ack --out bench/results/NAME.json

It runs the bridge as usual and times, from inside, each hook request's handler (arrival to
answer), its store (the group commit's statement, Postgres only) and the gap between one
handler's end and the next one's start. When the bridge stops it appends one JSON line of
percentiles to ``BENCH_HANDLER_TIMING`` (one line per bridge process: the bench restarts the
bridge between modes, so a run writes several). The bench marks such runs dirty
(``BENCH_BRIDGE_LAUNCHER``).
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from typing import Any

from claude_bridge.hooks import server
from claude_bridge.store import group_commit

_samples: dict[str, list[float]] = {"handler": [], "store": [], "gap": []}
_last_end: list[float] = []


def _timed_handler() -> None:
    handle = server.HookServer.handle_hook

    async def timed(self: server.HookServer, request: Any) -> Any:
        start = time.perf_counter()
        if _last_end:
            _samples["gap"].append(start - _last_end[0])
        try:
            return await handle(self, request)
        finally:
            end = time.perf_counter()
            _samples["handler"].append(end - start)
            _last_end[:] = [end]

    server.HookServer.handle_hook = timed  # type: ignore[method-assign]

    store = group_commit.GroupCommit._store

    async def timed_store(self: group_commit.GroupCommit, batch: Any) -> Any:
        start = time.perf_counter()
        try:
            return await store(self, batch)
        finally:
            _samples["store"].append(time.perf_counter() - start)

    group_commit.GroupCommit._store = timed_store  # type: ignore[method-assign]


def summary() -> dict[str, Any]:
    """Milliseconds: n, p50, p90, p99, max per measure (gaps over 10 ms are idle, left out)."""
    out: dict[str, Any] = {}
    for name, values in _samples.items():
        kept = sorted(v for v in values if name != "gap" or v < 0.01)
        if not kept:
            continue
        n = len(kept)
        out[name] = {"n": n, **{
            label: round(1000 * kept[min(n - 1, int(n * q))], 3)
            for label, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
        }}  # fmt: skip
    return out


def _write() -> None:
    path = os.environ.get("BENCH_HANDLER_TIMING")
    if path and _samples["handler"]:
        with open(path, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), **summary()}) + "\n")


if __name__ == "__main__":
    _timed_handler()
    atexit.register(_write)
    from claude_bridge.cli import main

    sys.argv[0] = "claude-bridge"
    raise SystemExit(main())
