"""A host whose user also ran ``install-hooks --user`` (the README's setup) and then runs the
runner, which passes the same hooks with ``--settings``: Claude Code runs each hook once, so a
runner session's events are not doubled. Real CLI in tmux, real Synapse, both stores."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from claude_bridge.app import Bridge
from tests.e2e.claude_code import ClaudeCode
from tests.e2e.conftest import HOOK_TOKEN, Stack
from tests.e2e.fake_anthropic import PLAIN_REPLY, FakeAnthropic
from tests.e2e.host_runner import HostRunner
from tests.e2e.test_foundation import _until
from tests.e2e.test_runner import launch, shows

pytestmark = pytest.mark.e2e


async def test_hooks_installed_for_the_user_as_well_run_once(
    stack: Stack, bridge: Bridge, model: FakeAnthropic, tmp_path: Path
) -> None:
    url = f"http://{stack.config['hooks']['listen']}"
    claude = await ClaudeCode.install(tmp_path, model, url, HOOK_TOKEN)  # ~/.claude/settings.json
    runner = HostRunner(tmp_path, claude, url)
    await runner.start()
    try:
        admin = stack.users["admin"]
        session, room = await launch(stack, bridge, runner, "hello, once each")
        await shows(admin, room, session, PLAIN_REPLY)

        async def stopped() -> bool:
            return bool(
                await bridge.db.fetchval(
                    "SELECT 1 FROM hook_event WHERE thread_id=$1 AND event_name='Stop'", session
                )
            )

        await _until(stopped, "the turn's Stop")
        rows = await bridge.db.fetch(
            "SELECT event_name FROM hook_event WHERE thread_id=$1", session
        )
        counts = Counter(r["event_name"] for r in rows)
        for name in ("SessionStart", "UserPromptSubmit", "Stop"):
            assert counts[name] == 1, counts
    finally:
        await runner.close()
