"""``scripts/quickstart`` as a new user runs it: the real script, a real Synapse and the real
bridge as processes, in a fresh folder; again in the same folder; beside a second copy; killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from ruamel.yaml import YAML

from claude_bridge.devenv.processes import command_of, port_holder
from claude_bridge.devenv.synapse import free_port
from tests.e2e.claude_code import _descendants
from tests.e2e.test_foundation import _until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
READY = "claude-bridge is running"
LIMIT = 180.0
"""Seconds for a quickstart to be ready (or to refuse) on a loaded 2-core machine."""


@dataclass
class Quickstart:
    """One ``scripts/quickstart`` process; its output (the bridge's log included) is kept."""

    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    children: set[int] = field(default_factory=set)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    async def _read(self) -> None:
        assert self.proc.stdout
        async for line in self.proc.stdout:
            self.lines.append(line.decode(errors="replace"))
            self.children.update(_descendants(self.proc.pid))
            self.changed.set()
        self.changed.set()

    async def until(self, needle: str) -> None:
        """Until ``needle`` is printed; fails if the process ends first."""
        async with asyncio.timeout(LIMIT):
            while needle not in self.output:
                if self.proc.stdout and self.proc.stdout.at_eof():
                    raise AssertionError(f"quickstart ended without {needle!r}:\n{self.output}")
                self.changed.clear()
                await self.changed.wait()

    async def exit_code(self) -> int:
        return await asyncio.wait_for(self.proc.wait(), LIMIT)

    async def interrupt(self) -> int:
        """Ctrl-C (SIGINT to the quickstart); its exit code."""
        self.proc.send_signal(signal.SIGINT)
        return await self.exit_code()


Start = Callable[..., Awaitable[Quickstart]]


@pytest.fixture
async def quickstart() -> AsyncIterator[Start]:
    started: list[Quickstart] = []
    readers: list[asyncio.Task[None]] = []

    async def start(data: Path, *args: str) -> Quickstart:
        proc = await asyncio.create_subprocess_exec(
            str(REPO / "scripts" / "quickstart"),
            "--data",
            str(data),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        run = Quickstart(proc)
        readers.append(asyncio.create_task(run._read()))
        started.append(run)
        return run

    yield start
    for run in started:  # whatever a failed test left: the quickstart and everything it started
        for pid in [run.proc.pid, *run.children, *_descendants(run.proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await run.proc.wait()
    for reader in readers:
        reader.cancel()


def ports() -> list[str]:
    return [
        *("--port", str(free_port())),
        *("--appservice-port", str(free_port())),
        *("--hook-port", str(free_port())),
    ]


def login_of(data: Path) -> dict[str, str]:
    path = data / "login.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded: dict[str, str] = YAML(typ="safe").load(path.read_text())
    return loaded


async def logs_in(login: dict[str, str]) -> bool:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": login["user"]},
        "password": login["password"],
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{login['homeserver']}/_matrix/client/v3/login", json=body) as r:
            return r.status == 200


async def healthy(data: Path) -> bool:
    listen = YAML(typ="safe").load((data / "config.yaml").read_text())["hooks"]["listen"]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://{listen}/health") as resp:
            return resp.status == 200


async def gone(pids: set[int]) -> None:
    """Until none of ``pids`` runs (a zombie waiting for its reaper counts as gone)."""

    async def none_left() -> bool:
        return not any(command_of(p) for p in pids)

    await _until(none_left, f"none of {sorted(pids)} running")


async def test_the_quickstart_runs_again_in_the_same_folder(
    quickstart: Start, tmp_path: Path
) -> None:
    """The rerun docs/quickstart.md invites: it reuses the folder, its ports and its login."""
    data = tmp_path / "data"
    first = await quickstart(data, *ports())
    await first.until(READY)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("config.yaml", "registration.yaml"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600
    login = login_of(data)
    assert login["user"] == "@admin:localhost" and await logs_in(login)
    assert await healthy(data)
    doctor = await asyncio.create_subprocess_exec(
        str(REPO / ".venv" / "bin" / "claude-bridge"),
        *("doctor", "-c", str(data / "config.yaml"), "-r", str(data / "registration.yaml")),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    report = (await doctor.communicate())[0].decode()
    assert doctor.returncode == 0, report
    assert f"doctor -c {data / 'config.yaml'} -r {data / 'registration.yaml'}" in first.output
    children = set(first.children)
    assert await first.interrupt() == 0
    await gone(children)

    second = await quickstart(data)  # no ports given: the first run's
    await second.until(READY)
    assert login_of(data) == login and await logs_in(login)
    assert await healthy(data)
    assert await second.interrupt() == 0


async def test_a_second_quickstart_says_what_is_in_the_way(
    quickstart: Start, tmp_path: Path
) -> None:
    """A second copy in the same folder, or one asking for a port the first one holds, stops
    before starting anything and names the holder; the first one keeps running."""
    first_data, other = tmp_path / "first", tmp_path / "other"
    first = await quickstart(first_data, *ports())
    await first.until(READY)
    config = YAML(typ="safe").load((first_data / "config.yaml").read_text())
    synapse_port = config["homeserver"]["address"].rsplit(":", 1)[1]
    hook_port = config["hooks"]["listen"].rsplit(":", 1)[1]

    again = await quickstart(first_data)
    assert await again.exit_code() == 1
    assert f"a quickstart is already running with {first_data} (pid {first.proc.pid})" in (
        again.output
    )

    cases = [
        (
            ["--port", synapse_port],
            f"port {synapse_port} is in use by pid",
            "synapse.app.homeserver",
        ),
        (["--hook-port", hook_port], f"port {hook_port} is in use by pid", "claude_bridge run"),
    ]
    for flags, named, holder in cases:
        clash = await quickstart(other, *ports(), *flags)
        assert await clash.exit_code() == 1
        assert named in clash.output and holder in clash.output, clash.output
        assert READY not in clash.output
    assert await healthy(first_data)
    assert await first.interrupt() == 0

    # The first folder's hook port, now taken by someone else: the rerun says so and how to move.
    with socket.create_server(("127.0.0.1", int(hook_port))):
        rerun = await quickstart(first_data)
        assert await rerun.exit_code() == 1
    assert f"port {hook_port} is in use by pid {os.getpid()} (" in rerun.output
    assert "pass --hook-port" in rerun.output and READY not in rerun.output


async def test_a_killed_quickstart_leaves_nothing_running(
    quickstart: Start, tmp_path: Path
) -> None:
    """SIGKILL gives the quickstart no chance to stop its children: they die with it (a
    parent-death signal), and the next start in the folder works. A bridge and a Synapse left on
    the folder all the same (started by hand, or by a quickstart on a system without that
    signal) are stopped at the next start."""
    data = tmp_path / "data"
    first = await quickstart(data, *ports())
    await first.until(READY)
    children = set(first.children)
    assert len(children) == 2  # Synapse and the bridge
    first.proc.kill()
    await gone(children)

    synapse_port = int(
        YAML(typ="safe")
        .load((data / "config.yaml").read_text())["homeserver"]["address"]
        .rsplit(":", 1)[1]
    )
    strays = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            *argv,
            cwd=cwd,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        for argv, cwd in [
            (("-m", "claude_bridge", "run", "-c", str(data / "config.yaml")), data),
            (
                ("-m", "synapse.app.homeserver", "-c", str(data / "synapse" / "homeserver.yaml")),
                data / "synapse",
            ),
        ]
    ]
    bridge, synapse = strays
    try:

        async def both_up() -> bool:
            holder = port_holder(synapse_port)
            lock = _read(data / "claude-bridge.db.lock")
            return f"pid {bridge.pid} " in lock and holder is not None and holder.pid == synapse.pid

        await _until(both_up, "the stray bridge and Synapse up", LIMIT)
        second = await quickstart(data)
        await second.until(READY)
        assert f"stopped a bridge still running on {data} (pid {bridge.pid})" in second.output
        assert f"stopped a Synapse still running on {data} (pid {synapse.pid})" in second.output
        for stray in strays:
            await asyncio.wait_for(stray.wait(), LIMIT)
        assert await healthy(data)
        assert await second.interrupt() == 0
    finally:
        for stray in strays:
            if stray.returncode is None:
                stray.kill()
                await stray.wait()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
