"""The two ways to connect Claude Code, through a bridge outage: what is lost, what each hook costs.

    .venv/bin/python bench/outage_modes.py [--outage 30] [--interval 0.5]

For each mode a simulated Claude Code session works through turns (prompt, tool call, its result,
answer; every third turn an idle Notification), writing its transcript as Claude Code does and
firing one hook every ``--interval`` seconds, while the bridge (a real process on a private
Synapse) is up for 10 s, stopped for ``--outage`` seconds, then restarted for 10 s:

- ``http``: hooks POSTed directly, failing open like Claude Code's ``http`` hooks; the bridge's
  catch-up fills the gap from the transcript at the session's next event;
- ``durable``: every hook runs the ``claude-bridge-hook`` shim (``install-hooks --durable``), which
  spools while the bridge is down and replays on its next call.

It reports the hooks fired during the outage, how many of those the room ends up showing (stored
by the bridge, live or recovered), how many are lost, and the wall time of one hook call (median,
p90) with the bridge up and with it down. Loopback only; bounded by the phase durations.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.soak import free_port, payload, wait_ready  # noqa: E402
from claude_bridge.config import parse_config  # noqa: E402
from claude_bridge.devenv.synapse import LocalSynapse  # noqa: E402
from claude_bridge.registration import build_registration, new_token  # noqa: E402
from tests.claude_transcript import TranscriptWriter  # noqa: E402

TOKEN = "outage-hook-secret"


class Session:
    """A Claude Code session: an endless sequence of (write the transcript, fire a hook) steps."""

    def __init__(self, projects: Path) -> None:
        self.id = str(uuid.uuid4())
        self.path = projects / "-home-dev-projects-demo-app" / f"{self.id}.jsonl"
        self.transcript = TranscriptWriter(self.path, self.id)
        self.turn = 0

    def hook(self, name: str, **fields: Any) -> dict[str, Any]:
        return {**payload(name), "session_id": self.id, "transcript_path": str(self.path), **fields}

    def steps(self) -> Any:
        while True:
            self.turn += 1
            prompt = f"turn {self.turn}: fix the next test"
            self.transcript.prompt(prompt)
            yield ("prompt", prompt), self.hook("UserPromptSubmit", prompt=prompt)
            tool_input = {"command": f"pytest -q tests/test_{self.turn}.py", "description": "Run"}
            use = self.transcript.tool_use("Bash", tool_input)
            yield ("tool", use), self.hook("PreToolUse", tool_use_id=use, tool_input=tool_input)
            self.transcript.tool_result(use, "1 passed")
            yield ("result", use), self.hook("PostToolUse", tool_use_id=use, tool_input=tool_input,
                                             tool_response={"stdout": "1 passed"})  # fmt: skip
            answer = f"Turn {self.turn} fixed."
            self.transcript.text(answer)
            yield ("answer", answer), self.hook("Stop", last_assistant_message=answer)
            if self.turn % 3 == 0:
                yield (
                    ("notification", self.turn),
                    self.hook("Notification.idle_prompt", turn=self.turn),
                )


class Bridge:
    def __init__(self, work: Path, config: dict[str, Any]) -> None:
        self.work = work
        self.config = config
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        (self.work / "config.yaml").write_text(json.dumps(self.config))
        log = (self.work / "bridge.log").open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "claude_bridge", "run", "-c", str(self.work / "config.yaml"),
            cwd=REPO, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip
        url = f"http://{self.config['hooks']['listen']}/health"
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, url, self.proc, timeout=60)

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 30)


async def fire_http(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> bool:
    try:
        async with http.post(url, json=body, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            await resp.read()
            return resp.status == 200
    except aiohttp.ClientError:
        return False  # Claude Code's http hook fails open: the event is gone


async def fire_shim(url: str, spool: Path, body: dict[str, Any]) -> bool:
    env = {**os.environ, "CLAUDE_BRIDGE_TOKEN": TOKEN, "CLAUDE_BRIDGE_SPOOL": str(spool)}
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "claude-bridge-hook"), "--url", url, "--timeout", "5",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip
    await proc.communicate(json.dumps(body).encode())
    return proc.returncode == 0


async def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"claude-bridge-outage-{mode}-"))
    projects = work / "projects"
    as_port, hook_port = free_port(), free_port()
    synapse = LocalSynapse(work / "synapse")
    config = {
        "homeserver": {"address": synapse.url, "domain": "localhost"},
        "appservice": {"port": as_port, "address": f"http://127.0.0.1:{as_port}",
                       "as_token": new_token(), "hs_token": new_token()},
        "hooks": {"listen": f"127.0.0.1:{hook_port}", "tokens": {"bench": TOKEN},
                  "catchup": {"transcript_dirs": [str(projects)]}},
        "database": f"sqlite:{work / 'bridge.db'}",
        "logging": {"level": "INFO", "format": "json"},
    }  # fmt: skip
    registration = work / "registration.yaml"  # JSON is YAML
    registration.write_text(json.dumps(build_registration(parse_config(config))))
    synapse.app_service_config_files = [registration]
    await synapse.start()
    bridge = Bridge(work, config)
    await bridge.start()
    session = Session(projects)
    steps = session.steps()
    url = f"http://127.0.0.1:{hook_port}"
    timings: dict[str, list[float]] = {"up": [], "down": []}
    during_outage: list[tuple[str, Any]] = []
    try:
        async with aiohttp.ClientSession() as http:

            async def phase(seconds: float, state: str) -> None:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    key, body = next(steps)
                    started = time.perf_counter()
                    if mode == "http":
                        await fire_http(http, f"{url}/claude/v1/hooks", body)
                    else:
                        await fire_shim(url, work / "spool", body)
                    timings[state].append((time.perf_counter() - started) * 1000)
                    if state == "down":
                        during_outage.append(key)
                    await asyncio.sleep(args.interval)

            await phase(10, "up")
            await bridge.stop()
            await phase(args.outage, "down")
            await bridge.start()
            await phase(10, "up")
        shown = await shown_in_store(work / "bridge.db")
    finally:
        await bridge.stop()
        await synapse.stop()
    kept = [k for k in during_outage if k in shown]
    return {
        "mode": mode,
        "hooks_during_outage": len(during_outage),
        "shown_after_recovery": len(kept),
        "lost": len(during_outage) - len(kept),
        "lost_kinds": sorted({k[0] for k in during_outage if k not in shown}),
        "hook_ms_up_median": round(statistics.median(timings["up"]), 1),
        "hook_ms_up_p90": round(statistics.quantiles(timings["up"], n=10)[-1], 1),
        "hook_ms_down_median": round(statistics.median(timings["down"]), 1),
    }


async def shown_in_store(db: Path) -> set[tuple[str, Any]]:
    """What the bridge stored (live or recovered from the transcript), as the bench's keys."""
    import sqlite3

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        payloads = [json.loads(p) for (p,) in conn.execute("SELECT payload FROM hook_event")]
    shown: set[tuple[str, Any]] = set()
    for p in payloads:
        name = p.get("hook_event_name")
        if name == "UserPromptSubmit":
            shown.add(("prompt", p.get("prompt")))
        elif name == "PreToolUse":
            shown.add(("tool", p.get("tool_use_id")))
        elif name in ("PostToolUse", "PostToolUseFailure"):
            shown.add(("result", p.get("tool_use_id")))
        elif name == "Stop":
            shown.add(("answer", p.get("last_assistant_message")))
        elif name == "Notification" and isinstance(p.get("turn"), int):
            shown.add(("notification", p["turn"]))
    return shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between hooks")
    parser.add_argument("--modes", default="http,durable")
    args = parser.parse_args()
    if not 0 < args.outage <= 300 or not 0.05 <= args.interval <= 10:
        parser.error("bounded: --outage ≤ 300 s, 0.05 ≤ --interval ≤ 10")
    results = [asyncio.run(run_mode(m, args)) for m in args.modes.split(",")]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
