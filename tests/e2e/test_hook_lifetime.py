"""No hook process of ours outlives its Claude Code: the real CLI in its terminal UI, the
background waiter (``claude-bridge-hook wait``, an ``asyncRewake`` Stop hook) long-polling the
bridge, then the CLI exits or is killed.

Claude Code starts hooks in process groups of their own and does not always stop an async hook
when it goes: a waiter left behind would long-poll for up to an hour, session after session.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path

import pytest

from claude_bridge.app import Bridge
from tests.e2e.conftest import Stack
from tests.e2e.fake_anthropic import FakeAnthropic
from tests.e2e.test_claude_cli import claude_code
from tests.e2e.test_foundation import _until

pytestmark = pytest.mark.e2e

GONE_WITHIN = 30.0
"""Generous for a loaded machine; the waiter itself checks about twice a second."""


def our_hook_processes(home: Path) -> list[int]:
    """Processes running the bridge's shim with this Claude Code's HOME (hooks inherit it)."""
    found = []
    marker = f"HOME={home}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if b"claude_bridge" in cmdline and marker in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("end", ["exit", "sigkill"])
async def test_the_background_waiter_ends_with_its_claude_code(
    stack: Stack, bridge: Bridge, model: FakeAnthropic, tmp_path: Path, end: str
) -> None:
    claude = await claude_code(stack, model, tmp_path)
    session = str(uuid.uuid4())
    async with claude.terminal("--session-id", session) as term:
        await term.wait_for("❯")
        await term.submit("hello there")

        async def waiting() -> bool:
            return bridge.control.waiter.waiting(session) and bool(our_hook_processes(claude.home))

        await _until(waiting, "the background waiter polling the bridge", timeout=60)
        if end == "exit":
            await term.submit("/exit")
        else:
            os.kill(term.proc.pid, signal.SIGKILL)
        await asyncio.wait_for(term.proc.wait(), 60)

        async def gone() -> bool:
            return not our_hook_processes(claude.home)

        await _until(gone, f"no hook process left after the CLI's {end}", timeout=GONE_WITHIN)
