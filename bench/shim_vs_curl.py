"""Wall time of one ``claude-bridge-hook`` call vs ``curl`` doing the same POST.

Claude Code waits for every command hook, so the shim's per-call cost is added to the user's
wait on every event. This starts a tiny stdlib HTTP server on loopback that answers ``{}``
(like the bridge with nothing to say), then times N runs of each command, fed the same hook
input on stdin, and prints median / p90 / min in milliseconds.

    .venv/bin/python bench/shim_vs_curl.py [--runs 50]

Bounded: every run has a 10 s timeout; the server only listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
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


def time_runs(argv: list[str], runs: int, *, warmup: int = 3) -> list[float]:
    times = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        done = subprocess.run(argv, input=PAYLOAD, capture_output=True, timeout=10, check=False)
        elapsed = time.perf_counter() - start
        if done.returncode != 0 or done.stdout.strip() != b"{}":
            raise SystemExit(f"{argv[0]} failed: rc={done.returncode} out={done.stdout[:200]!r}")
        if i >= warmup:
            times.append(elapsed * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    endpoint = base + "/claude/v1/hooks"

    with tempfile.TemporaryDirectory() as spool:
        shim_args = ["--url", base, "--spool-dir", spool]
        commands: dict[str, list[str]] = {}
        if curl := shutil.which("curl"):
            commands["curl"] = [
                curl, "-sS", "--max-time", "10", "-X", "POST",
                "-H", "Content-Type: application/json", "-H", "Authorization: Bearer x",
                "--data-binary", "@-", endpoint,
            ]  # fmt: skip
        script = Path(sys.executable).parent / "claude-bridge-hook"
        if script.exists():
            commands["claude-bridge-hook (console script)"] = [str(script), *shim_args]
        commands["python -m claude_bridge.shim"] = [
            sys.executable, "-m", "claude_bridge.shim", *shim_args,
        ]  # fmt: skip
        # For scale: what starting this Python at all costs.
        commands["python -c pass (interpreter start only)"] = [sys.executable, "-c", "pass"]

        print(f"{args.runs} runs each, POST of {len(PAYLOAD)} bytes to {endpoint}")
        print(f"{'command':44} {'median':>8} {'p90':>8} {'min':>8}   (ms)")
        for name, argv in commands.items():
            if name.startswith("python -c"):
                # prints nothing: time it without the answer check
                ts = []
                for _ in range(args.runs):
                    start = time.perf_counter()
                    subprocess.run(argv, capture_output=True, timeout=10, check=True)
                    ts.append((time.perf_counter() - start) * 1000)
            else:
                ts = time_runs(argv, args.runs)
            p90 = statistics.quantiles(ts, n=10)[-1]
            print(f"{name:44} {statistics.median(ts):8.1f} {p90:8.1f} {min(ts):8.1f}")
        leftovers = list(Path(spool).iterdir())
    server.shutdown()
    if leftovers:
        raise SystemExit(f"the shim spooled events during the benchmark: {leftovers}")
    print(f"server answered {Handler.hits} requests")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
