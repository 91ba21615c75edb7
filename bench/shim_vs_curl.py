"""Wall time of one ``claude-bridge-hook`` call vs ``curl`` doing the same POST.

Claude Code waits for every command hook, so the shim's per-call cost is added to the user's
wait on every event. This starts a tiny stdlib HTTP server on loopback that answers ``{}``
(like the bridge with nothing to say), then times N runs of each command, fed the same hook
input on stdin, and prints median / p90 / min in milliseconds, plus the median CPU time
(user + system) of the child, which a busy machine disturbs much less than wall time.

The commands: curl; the shim as ``install-hooks`` writes it for a personal settings file
(``python -I -S -c <loader>``, see ``installer.fast_shim_argv``); the same module run as a
script (``python -I -S …/claude_bridge/shim.py``: compiled on every run); the console script
``claude-bridge-hook``; ``python -m claude_bridge.shim``; and for scale the interpreter alone
(``python -I -S -c pass``: the floor of any Python hook, and ``python -c pass``). Runs are
interleaved (one of each command per round), so all see the same machine load.

    .venv/bin/python bench/shim_vs_curl.py [--runs 50]

Bounded: every run has a 10 s timeout; the server only listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from claude_bridge import installer, shim

REPO = Path(__file__).resolve().parents[1]
CURL = "curl"
INSTALLED = "install-hooks command (python -I -S -c)"
SCRIPT = "python -I -S claude_bridge/shim.py"
CONSOLE = "claude-bridge-hook (console script)"
MODULE = "python -m claude_bridge.shim"
FLOOR = "python -I -S -c pass (floor)"
START = "python -c pass (interpreter start only)"
PAYLOAD = json.dumps(
    {
        "session_id": "3eb5f21d-5dcb-43a8-9ab8-939331f73b6b",
        "transcript_path": "/home/dev/.claude/projects/-home-dev-projects-demo-app/"
        "3eb5f21d-5dcb-43a8-9ab8-939331f73b6b.jsonl",
        "cwd": "/home/dev/projects/demo-app",
        "permission_mode": "bypassPermissions",
        "hook_event_name": "PostToolUse",
        "tool_name": "Bash",
        "tool_input": {"command": "echo hello-from-tool", "description": "Print a greeting"},
        "tool_response": {"stdout": "hello-from-tool", "stderr": "", "interrupted": False},
        "tool_use_id": "toolu_dce37e0b10804babbda9a438",
        "duration_ms": 22,
    }
).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hits = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Handler.hits += 1
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def time_runs(
    argv: list[str],
    runs: int,
    *,
    warmup: int = 3,
    payload: bytes = PAYLOAD,
    env: dict[str, str] | None = None,
) -> list[float]:
    times = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        done = subprocess.run(
            argv, input=payload, capture_output=True, timeout=10, check=False, env=env
        )
        elapsed = time.perf_counter() - start
        if done.returncode != 0 or not done.stdout.strip().startswith(b"{"):
            raise SystemExit(f"{argv[0]} failed: rc={done.returncode} out={done.stdout[:200]!r}")
        if i >= warmup:
            times.append(elapsed * 1000)
    return times


def commands(base: str, spool: str, token: str = "x") -> dict[str, list[str]]:
    """The commands to compare: curl and the shim's forms (see the module docstring)."""
    endpoint = base + "/claude/v1/hooks"
    shim_args = ["--url", base, "--spool-dir", spool]
    found: dict[str, list[str]] = {}
    if curl := shutil.which("curl"):
        found[CURL] = [
            curl, "-sS", "--max-time", "10", "-X", "POST",
            "-H", "Content-Type: application/json", "-H", f"Authorization: Bearer {token}",
            "--data-binary", "@-", endpoint,
        ]  # fmt: skip
    found[INSTALLED] = [*installer.fast_shim_argv(), *shim_args]
    found[SCRIPT] = [sys.executable, "-I", "-S", shim.__file__, *shim_args]
    script = Path(sys.executable).parent / "claude-bridge-hook"
    if script.exists():
        found[CONSOLE] = [str(script), *shim_args]
    found[MODULE] = [sys.executable, "-m", "claude_bridge.shim", *shim_args]
    return found


def time_interleaved(
    argvs: dict[str, list[str]],
    runs: int,
    *,
    warmup: int = 3,
    payload: bytes = PAYLOAD,
    env: dict[str, str] | None = None,
    unchecked: frozenset[str] = frozenset(),
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and CPU times (ms) of ``runs`` runs of each command, one of each per round. Each
    must exit 0 and print a JSON object, except those named in ``unchecked``.

    CPU time is the children's user + system time around each run: meaningful only when this
    process starts no other children meanwhile (``main``), not under ``python -m bench``.
    """
    wall: dict[str, list[float]] = {name: [] for name in argvs}
    cpu: dict[str, list[float]] = {name: [] for name in argvs}
    for i in range(warmup + runs):
        for name, argv in argvs.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            done = subprocess.run(
                argv, input=payload, capture_output=True, timeout=10, check=False, env=env
            )
            elapsed = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if name not in unchecked and (
                done.returncode != 0 or not done.stdout.strip().startswith(b"{")
            ):
                raise SystemExit(f"{name} failed: rc={done.returncode} out={done.stdout[:200]!r}")
            if i >= warmup:
                wall[name].append(elapsed * 1000)
                used = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
                cpu[name].append(used * 1000)
    return wall, cpu


def measure(
    base: str, token: str, runs: int, payload: bytes = PAYLOAD, *, warmup: int = 3
) -> dict[str, list[float]]:
    """Wall times (ms) of each command POSTing ``payload`` to the hook server at ``base``.

    Used by ``python -m bench run`` against the real bridge. Raises SystemExit if the shim
    spooled anything (it could not reach the bridge: the timing would be meaningless).
    """
    env = {**os.environ, "CLAUDE_BRIDGE_TOKEN": token}
    with tempfile.TemporaryDirectory() as spool:
        wall, _ = time_interleaved(
            commands(base, spool, token), runs, warmup=warmup, payload=payload, env=env
        )
        leftovers = list(Path(spool).iterdir())
    if leftovers:
        raise SystemExit(f"the shim spooled events during the benchmark: {leftovers}")
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    endpoint = base + "/claude/v1/hooks"
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory() as spool:
        argvs = commands(base, spool)
        # For scale: what starting this Python at all costs (they print nothing: no check).
        floors = {
            FLOOR: [sys.executable, "-I", "-S", "-c", "pass"],
            START: [sys.executable, "-c", "pass"],
        }
        wall, cpu = time_interleaved({**argvs, **floors}, args.runs, unchecked=frozenset(floors))
        leftovers = list(Path(spool).iterdir())
    server.shutdown()
    if leftovers:
        raise SystemExit(f"the shim spooled events during the benchmark: {leftovers}")

    curl = statistics.median(wall[CURL]) if CURL in wall else None
    print(f"{args.runs} runs each (interleaved), POST of {len(PAYLOAD)} bytes to {endpoint}")
    print(f"{'command':42} {'median':>7} {'p90':>7} {'min':>7} {'cpu':>7} {'× curl':>7}   (ms)")
    for name, ts in wall.items():
        median = statistics.median(ts)
        p90 = statistics.quantiles(ts, n=10)[-1]
        ratio = f"{median / curl:7.2f}" if curl else f"{'':7}"
        print(
            f"{name:42} {median:7.2f} {p90:7.2f} {min(ts):7.2f} "
            f"{statistics.median(cpu[name]):7.2f} {ratio}"
        )
    print(f"server answered {Handler.hits} requests")
    load_after = os.getloadavg()
    print(
        f"load average (1, 5, 15 min) on {os.cpu_count()} cores: before "
        f"{', '.join(f'{x:.2f}' for x in load_before)}; after "
        f"{', '.join(f'{x:.2f}' for x in load_after)}"
    )
    if curl:
        installed = statistics.median(wall[INSTALLED])
        verdict = "reached" if installed <= 1.5 * curl else "NOT reached"
        print(
            f"target: the installed command ≤ 1.5 × curl ({1.5 * curl:.2f} ms): {verdict} "
            f"({installed:.2f} ms, {installed / curl:.2f} × curl; floor "
            f"{statistics.median(wall[FLOOR]):.2f} ms)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
