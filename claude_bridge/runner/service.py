"""The runner, put together: checks at start, the hooks settings file, discovery, the loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path

import aiohttp

from claude_bridge import host_files
from claude_bridge.installer import (
    DEFAULT_TOKEN_ENV,
    claude_version,
    default_hook_command,
    desired_hooks,
    reconcile,
)
from claude_bridge.log import get_logger
from claude_bridge.runner.config import RunnerConfig
from claude_bridge.runner.files import FileReceiver, prune_forever
from claude_bridge.runner.jobs import Executor
from claude_bridge.runner.journal import Journal, lock_state_dir
from claude_bridge.runner.loop import PollLoop
from claude_bridge.runner.sessions import Sessions
from claude_bridge.runner.tmux import Tmux, TmuxMissing
from claude_bridge.runner.trust import first_run_problem

log = get_logger(__name__)

EXIT_SETUP = 1


def session_env(config: RunnerConfig, base: dict[str, str] | None = None) -> dict[str, str]:
    """What every session starts with: the runner's own environment, its tmux variables left
    out (the pane sets its own), the bridge's URL and the hook token the hooks send."""
    env = dict(os.environ if base is None else base)
    for name in ("TMUX", "TMUX_PANE"):
        env.pop(name, None)
    env["CLAUDE_BRIDGE_URL"] = config.url
    env[DEFAULT_TOKEN_ENV] = config.token
    return env


def write_hooks_settings(config: RunnerConfig) -> Path:
    """The bridge's hooks as ``install-hooks`` builds them, for ``--settings``. No secret in
    it: the hooks read the token from the session's environment. No background waiter: the
    bridge types a message into an idle runner session instead (a ``type`` job)."""
    hooks = desired_hooks(
        url=config.url,
        durable=config.durable,
        hook_command=default_hook_command(False),
        claude_version=claude_version(config.claude),
        wake=False,
    )
    path = config.state_dir / "hooks-settings.json"
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(reconcile({}, hooks), f, indent=2)  # what install-hooks writes to a new file
    os.replace(tmp, path)
    return path


async def run_runner(config: RunnerConfig) -> int:
    tmux = Tmux(config.tmux, socket_name=None, socket_path=None)
    if config.tmux_socket:
        if "/" in config.tmux_socket:
            tmux.socket_path = config.tmux_socket
        else:
            tmux.socket_name = config.tmux_socket
    try:
        await tmux.check()
        lock = lock_state_dir(config.state_dir)
    except (TmuxMissing, RuntimeError, OSError) as e:
        print(f"claude-bridge runner: {e}", flush=True)
        return EXIT_SETUP
    journal = Journal(config.state_dir / "journal.jsonl")
    journal.open()
    env = session_env(config)
    for name, directory in config.projects.items():
        problem = first_run_problem(directory, env, trust=config.trust_projects)
        if problem:
            log.warning("runner.project_not_ready", project=name, problem=problem)
    for stale in (config.state_dir / "launch").glob("*.json"):
        stale.unlink(missing_ok=True)  # specs of sessions that never started
    settings = write_hooks_settings(config) if config.hooks else None
    sessions = Sessions(tmux, config.state_dir / "exits")
    await sessions.refresh()
    log.info(
        "runner.started",
        host=config.host,
        projects=sorted(config.projects),
        sessions=[live.tmux for live in sessions.live.values()],
        attach=tmux.attach_hint("<name>"),
    )
    executor = Executor(config, tmux, sessions, journal, env, settings)
    pruner = None
    if config.files_root is not None:
        executor.before_type.append(FileReceiver(config.url, config.token, config.files_root))
        keep = host_files.keep_seconds()
        pruner = asyncio.create_task(prune_forever(config.files_root, keep), name="files-prune")
    async with aiohttp.ClientSession() as http:
        loop = PollLoop(config, executor, sessions, http)
        running = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                running.add_signal_handler(sig, loop.stop)
        try:
            return await loop.run()
        finally:
            if pruner is not None:
                pruner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pruner
            await executor.close()
            journal.close()
            lock.close()
