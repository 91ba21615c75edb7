"""The event-loop choice: uvloop where it is installed, asyncio's when asked or when it is not."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from claude_bridge.cli import main
from claude_bridge.config import Config
from claude_bridge.config.example import render_example
from claude_bridge.event_loop import EventLoop, EventLoopUnavailable, loop_factory, loop_name


def test_auto_takes_uvloop_where_it_is_installed() -> None:
    pytest.importorskip("uvloop")
    factory = loop_factory(EventLoop.AUTO)
    assert factory is not None
    loop = factory()
    try:
        assert loop_name(loop) == "uvloop"
    finally:
        loop.close()


def test_asyncio_means_asyncio_s_own_loop() -> None:
    assert loop_factory(EventLoop.ASYNCIO) is None
    with asyncio.Runner(loop_factory=loop_factory(EventLoop.ASYNCIO)) as runner:
        assert loop_name(runner.get_loop()) == "asyncio"


def test_without_uvloop_auto_falls_back_and_uvloop_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop → ImportError
    assert loop_factory(EventLoop.AUTO) is None
    with pytest.raises(EventLoopUnavailable, match="uvloop is not installed"):
        loop_factory(EventLoop.UVLOOP)


def test_config_default_is_auto_and_rejects_other_names() -> None:
    assert Config().event_loop == EventLoop.AUTO
    assert Config.model_validate({"event_loop": "asyncio"}).event_loop == EventLoop.ASYNCIO
    with pytest.raises(ValueError, match="event_loop"):
        Config.model_validate({"event_loop": "trio"})


def test_run_without_the_uvloop_it_insists_on_exits_10_before_starting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)
    monkeypatch.setattr("claude_bridge.app.run_bridge", _must_not_run)
    monkeypatch.setattr("claude_bridge.log.setup_logging", lambda *args: None)  # process-wide
    config = tmp_path / "config.yaml"
    config.write_text(render_example().replace("event_loop: auto", "event_loop: uvloop"))
    assert main(["run", "-c", str(config)]) == 10
    assert "uvloop is not installed" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.db"))


async def _must_not_run(*args: object) -> int:
    raise AssertionError("the bridge started")
