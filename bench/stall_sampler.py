"""Which code holds the bridge's event loop when it is late: a launcher for ``bench run``.

    BENCH_BRIDGE_LAUNCHER=$PWD/bench/stall_sampler.py STALLS=/tmp/stalls.json \\
        CLAUDE_BRIDGE__EVENT_LOOP=asyncio python -m bench run --only load
    python bench/stall_sampler.py --report /tmp/stalls.json

A timer in the loop notes every ``BEAT`` seconds that the loop ran; a thread checks twice a
millisecond, and while the loop is more than ``STALL_MS`` late it samples the loop thread's
stack. Each stretch of lateness is one *episode* with its samples; the file keeps the most
sampled stacks and the episodes (every few seconds, so a killed bridge leaves it too). A
sample is taken when the sampling thread gets the interpreter lock, which the loop's thread
gives up in system calls and every switch interval (lowered here to 0.5 ms): calls that release
the lock (socket writes, SQLite) are over-represented, pure Python under-represented. The
sampler slows the bridge down; read which code, not how long. Trace with
``CLAUDE_BRIDGE__EVENT_LOOP=asyncio``: on uvloop the loop's own work is C that holds the lock,
so its stretches are missed or show only as the runner's frame. Used for docs/scaling.md's
trace of the load row. The bench marks such runs dirty (``BENCH_BRIDGE_LAUNCHER``).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

STALL_MS = float(os.environ.get("STALL_MS", "4"))
BEAT = 0.002
DEPTH = 18
OUT = Path(os.environ.get("STALLS", "/tmp/stalls.json"))


class StallSampler:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.last_beat = time.perf_counter()
        self.watching = False
        self.stacks: collections.Counter[str] = collections.Counter()
        self.episodes: list[dict[str, Any]] = []
        self.loop_thread = threading.get_ident()

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the beat in ``loop`` (called from its thread) and the sampling threads."""
        if self.watching:
            return
        self.watching = True
        self.loop_thread = threading.get_ident()

        def beat() -> None:
            self.last_beat = time.perf_counter()
            loop.call_later(BEAT, beat)

        loop.call_soon(beat)
        threading.Thread(target=self._sample, daemon=True, name="stall-sampler").start()
        threading.Thread(target=self._dump_every, args=(3.0,), daemon=True).start()

    def _sample(self) -> None:
        episode: list[str] = []
        while True:
            time.sleep(0.0005)
            late_ms = (time.perf_counter() - self.last_beat - BEAT) * 1000
            if late_ms > STALL_MS:
                frame = sys._current_frames().get(self.loop_thread)
                if frame is not None:
                    stack = _stack(frame)
                    self.stacks[stack] += 1
                    episode.append(stack)
            elif episode:
                top = collections.Counter(episode).most_common(3)
                self.episodes.append({"at": time.time(), "samples": len(episode), "top": top})
                episode = []

    def _dump_every(self, seconds: float) -> None:
        while True:
            time.sleep(seconds)
            data = {"stacks": self.stacks.most_common(60), "episodes": self.episodes[-500:]}
            tmp = self.out.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1))
            tmp.replace(self.out)


def _stack(frame: FrameType) -> str:
    """The innermost ``DEPTH`` frames, innermost first, paths shortened."""
    parts = []
    for fs in reversed(traceback.extract_stack(frame)[-DEPTH:]):
        name = fs.filename
        for cut in ("site-packages/", "/claude_bridge/", "/lib/python3.11/"):
            name = name.split(cut, 1)[-1]
        parts.append(f"{name}:{fs.lineno}:{fs.name}")
    return " <- ".join(parts)


def report(path: Path, top: int = 12) -> None:
    data = json.loads(path.read_text())
    episodes = sorted(data["episodes"], key=lambda e: -e["samples"])
    sizes = collections.Counter(min(e["samples"], 40) // 4 * 4 for e in episodes)
    print(f"{len(episodes)} episodes; by samples (bucket: count): {dict(sorted(sizes.items()))}")
    print("\nmost sampled stacks (innermost 5 frames):")
    for stack, n in data["stacks"][:top]:
        print(f"{n:6}  {' <- '.join(stack.split(' <- ')[:5])}")
    print("\nlongest episodes:")
    for e in episodes[:top]:
        print(f"  {e['samples']} samples")
        for stack, n in e["top"]:
            print(f"    {n:3}  {' <- '.join(stack.split(' <- ')[:4])}")


def _launch() -> int:
    sampler = StallSampler(OUT)
    sys.setswitchinterval(0.0005)
    from claude_bridge.app import Bridge

    start = Bridge.start

    async def start_watched(self: Bridge) -> None:
        sampler.watch(asyncio.get_running_loop())
        await start(self)

    Bridge.start = start_watched  # type: ignore[method-assign]
    from claude_bridge.cli import main

    return main()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--report"]:
        report(Path(sys.argv[2]))
        raise SystemExit(0)
    raise SystemExit(_launch())
