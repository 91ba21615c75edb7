"""Summaries of py-spy's collapsed stacks (``py-spy record -f raw``): where the bridge's CPU went.

``python -m bench run --profile DIR`` records one file per phase (``DIR/<phase>.collapsed.txt``);
this prints, for each, the busiest functions by own time and by inclusive time, and the same
inside the two hot paths: the hook acknowledgement (under ``handle_hook``) and delivery (under
``Delivery._run``).

    python -m bench profile DIR/ack.collapsed.txt [--top 25]
"""

from __future__ import annotations

import linecache
import re
from collections import Counter
from pathlib import Path

PATHS = {
    "hook ack (HookServer.handle_hook)": "HookServer.handle_hook (",
    "delivery (Delivery._run)": "Delivery._run (",
    "appservice transactions (Synapse → bridge)": "BridgeAppService._http_handle_transaction (",
    "inbound worker": "InboundProcessor._run (",
}
# A leaf frame on one of these source lines is a thread waiting, not working (py-spy cannot
# always tell inside containers): the event loop's select(), aiosqlite's queue get().
_IDLE_LINES = ("select(", ".get()", ".wait(", "tx.get(")
_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:()]+)(?::(?P<line>\d+))?\)$")


def _short(frame: str) -> str:
    """``func (…/site-packages/aiohttp/web_protocol.py:123)`` → ``func (aiohttp/web_protocol.py)``."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", "/claude_bridge/", "/lib/python3."):
        if marker in path:
            tail = path.split(marker, 1)[1]
            if marker == "/claude_bridge/":
                tail = "claude_bridge/" + tail
            elif marker == "/lib/python3.":
                tail = "stdlib/" + tail.split("/", 1)[-1]
            path = tail
            break
    return f"{m.group('func')} ({path})"


def _idle(frame: str) -> bool:
    m = _FRAME.match(frame.strip())
    if not m or not m.group("line"):
        return False
    if m.group("func").endswith(".select") and m.group("file").endswith("selectors.py"):
        return True
    source = linecache.getline(m.group("file"), int(m.group("line")))
    return any(marker in source for marker in _IDLE_LINES)


def load(path: Path, *, keep_idle: bool = False) -> list[tuple[list[str], int]]:
    """(frames root→leaf, samples) per distinct stack; waiting threads left out by default."""
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        frames, _, count = line.rpartition(" ")
        if not frames or not count.isdigit():
            continue
        raw = frames.split(";")
        if not keep_idle and _idle(raw[-1]):
            continue
        stacks.append(([_short(f) for f in raw], int(count)))
    return stacks


def summarize(stacks: list[tuple[list[str], int]], top: int = 20, under: str | None = None) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for frames, count in stacks:
        if under is not None:
            idx = next((i for i, f in enumerate(frames) if f.startswith(under)), None)
            if idx is None:
                continue
            frames = frames[idx:]
        total += count
        own[frames[-1]] += count
        for f in set(frames):
            inclusive[f] += count
    if not total:
        return "  (no samples)\n"
    lines = [f"  {total} samples"]
    lines.append("  own time:")
    lines += [f"    {100 * c / total:5.1f}%  {f}" for f, c in own.most_common(top)]
    lines.append("  inclusive (bridge code and what it calls):")
    ranked = [(f, c) for f, c in inclusive.most_common() if "claude_bridge/" in f or "mautrix" in f]
    lines += [f"    {100 * c / total:5.1f}%  {f}" for f, c in ranked[:top]]
    return "\n".join(lines) + "\n"


def report(path: Path, top: int = 20) -> str:
    stacks = load(path)
    idle = sum(c for _, c in load(path, keep_idle=True)) - sum(c for _, c in stacks)
    out = [
        f"== {path.name}: whole process, busy samples only ({idle} waiting samples left out)",
        summarize(stacks, top),
    ]
    for title, prefix in PATHS.items():
        out += [f"== {path.name}: {title}", summarize(stacks, top, under=prefix)]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench profile")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    for f in args.files:
        print(report(f, args.top))
    return 0
