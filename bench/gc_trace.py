"""Every garbage collection in the bridge, beside the windows a benchmark measured: a launcher.

    BENCH_BRIDGE_LAUNCHER=$PWD/bench/gc_trace.py GC_TRACE=/tmp/gc.json \\
        python -m bench run --only hold --out /tmp/hold.json
    python bench/gc_trace.py --report /tmp/gc.json /tmp/hold.json

As launcher it runs the bridge (its command line, same arguments, as ``stall_sampler.py``
does) with a ``gc.callbacks`` hook that notes each collection: wall-clock time, generation, milliseconds, objects collected;
a thread writes them to ``GC_TRACE`` every two seconds, so a killed bridge leaves them too.
``--report`` prints, per window of a results file (``raw.hold.ack_windows`` and the idle
windows), the collections inside it, and every collection over 5 ms. Used for docs/scaling.md,
"The garbage collector's pauses". The bench marks such runs dirty (``BENCH_BRIDGE_LAUNCHER``).
"""

from __future__ import annotations

import collections
import gc
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

OUT = Path(os.environ.get("GC_TRACE", "/tmp/gc-trace.json"))
LONG_MS = 5.0


def trace(out: Path) -> None:
    events: list[tuple[float, int, float, int]] = []
    started = [0.0]

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        ms = (time.perf_counter() - started[0]) * 1000
        events.append((round(time.time(), 3), info["generation"], round(ms, 2), info["collected"]))

    def write() -> None:
        while True:
            time.sleep(2)
            tmp = out.with_suffix(".tmp")
            tmp.write_text(json.dumps(list(events)))
            tmp.replace(out)

    gc.callbacks.append(note)
    threading.Thread(target=write, daemon=True, name="gc-trace").start()


def windows(results: dict[str, Any]) -> list[tuple[str, float, float]]:
    hold = results.get("raw", {}).get("hold", {})
    out = []
    for name in ("idle_nothing_held", "idle"):
        idle = hold.get(name) or {}
        if "from" in idle:
            out.append((name, idle["from"], idle["from"] + idle["window_s"]))
    for n, window in enumerate(hold.get("ack_windows", [])):
        kind = "acks, nothing held" if n in (0, 3) else "acks, all held"
        out.append((f"{kind} #{n}", window["from"], window["to"]))
    return sorted(out, key=lambda w: w[1])


def report(trace_file: Path, results_file: Path | None) -> None:
    events = json.loads(trace_file.read_text())
    if not events:
        print("no collections noted")
        return
    t0 = events[0][0]
    print(f"{len(events)} collections; by generation: "
          f"{dict(collections.Counter(e[1] for e in events))}")  # fmt: skip
    if results_file is not None:
        for name, start, end in windows(json.loads(results_file.read_text())):
            inside = [e for e in events if start <= e[0] <= end]
            longest = max((e[2] for e in inside), default=0.0)
            total = sum(e[2] for e in inside)
            print(f"  {name:24} {start - t0:7.1f}–{end - t0:7.1f} s: {len(inside):3} collections "
                  f"{dict(collections.Counter(e[1] for e in inside))}, {total:6.1f} ms in all "
                  f"({total / (end - start):.2f} ms/s), longest {longest:.1f} ms")  # fmt: skip
    print(f"over {LONG_MS:g} ms (seconds since the first collection, generation, ms, collected):")
    for at, generation, ms, collected in events:
        if ms > LONG_MS:
            print(f"  {at - t0:7.1f}  {generation}  {ms:7.2f}  {collected}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--report"]:
        report(Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None)
    else:
        trace(OUT)
        from claude_bridge.cli import main

        raise SystemExit(main())
