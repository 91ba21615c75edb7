"""Attacks on the one place Matrix text reaches a pane (``Executor.type_text``), on real tmux with
the stand-in for ``claude``: an operator's message arrives as one paste of words, never as keys,
and never as a text Claude Code's prompt would run as a command.

With the real CLI (2.1.x) a pasted ``/exit`` or ``!touch x`` followed by Enter runs the slash
command or the shell command (no permission asked), leading blanks or line breaks or not; and
tmux pastes the buffer's bytes as they are, so ``ESC [201~`` in it ends the bracketed paste and
the rest arrives as typed keys: Enter, ``!``, a command, Enter.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from claude_bridge.runner.jobs import Executor
from claude_bridge.runner.tmux import Tmux
from tests.unit.runner.conftest import screen
from tests.unit.runner.test_jobs import SID, job


async def _running(make: Callable[[], Executor], tmux: Tmux) -> tuple[Executor, str]:
    ex = make()
    assert (await ex.execute(job("new", id="j1"))).ok
    pane = ex.sessions.live[SID].pane_id
    await screen(tmux, pane, "CWD")
    return ex, pane


@pytest.mark.parametrize(
    "evil",
    [
        "look at this\x1b[201~\r!rm -rf ~\r",  # ends the paste, Enter, a shell command, Enter
        "look\x1b[201~\n!rm -rf ~\n",
        "look\x9b201~\r!rm -rf ~\r",  # the 8-bit CSI
        "look\x03\x04\x1b\r!rm -rf ~",
    ],
)
async def test_a_paste_end_sequence_in_the_text_types_no_keys(
    make: Callable[[], Executor], tmux: Tmux, evil: str
) -> None:
    ex, pane = await _running(make, tmux)
    assert (await ex.execute(job("type", id="t1", text=evil))).ok
    shown = (await screen(tmux, pane, "LINE:")).replace("\n", "")
    # One paste holding all of it, then the runner's one Enter: no keys of the attacker's.
    assert shown.count("PASTE:") == 1 and shown.count("LINE:") == 1
    assert "ESC" not in shown and "LINE:!rm" not in shown
    pasted = json.loads(shown.split("PASTE:", 1)[1].split("LINE:", 1)[0])
    assert "\x1b" not in pasted and "!rm -rf ~" in pasted


@pytest.mark.parametrize(
    "text", ["/exit", "!rm -rf ~", " \n\t!touch x", "\u200b\ufeff/permissions", "# remember", "&x"]
)
async def test_a_text_that_starts_like_a_command_is_not_typed(
    make: Callable[[], Executor], tmux: Tmux, text: str
) -> None:
    ex, pane = await _running(make, tmux)
    result = await ex.execute(job("type", id="t1", text=text))
    assert not result.ok and "runs as a command" in (result.error or "")
    assert (await ex.execute(job("type", id="t2", text="then a word"))).ok
    shown = (await screen(tmux, pane, "LINE:")).replace("\n", "")
    assert shown.count("PASTE:") == 1 and '"then a word"' in shown
    assert ex.sessions.live[SID].dead is False  # /exit did not end it


async def test_a_new_sessions_prompt_that_starts_like_a_command_starts_nothing(
    make: Callable[[], Executor], tmux: Tmux
) -> None:
    ex = make()
    result = await ex.execute(job("new", id="j1", prompt=" /exit"))
    assert not result.ok and "runs as a command" in (result.error or "")
    assert await tmux.panes() == []
    assert (await ex.execute(job("new", id="j2", prompt="fix /etc/hosts parsing"))).ok
