"""``claude-bridge runner``: its arguments, then the runner (``claude_bridge/runner/``)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from claude_bridge.cli.common import fail


def run(args: argparse.Namespace) -> int:
    from claude_bridge.log import setup_logging
    from claude_bridge.runner.config import RunnerConfigError, build_config
    from claude_bridge.runner.service import run_runner

    flags = {
        "url": args.url,
        "token": args.token,
        "host": args.host,
        "project": args.project,
        "claude": args.claude,
        "args": args.arg or None,
        "max_sessions": args.max_sessions,
        "accept_from": args.accept_from,
        "state_dir": args.state_dir,
        "tmux": args.tmux,
        "tmux_socket": args.tmux_socket,
        "wait": args.wait,
        "end_timeout": args.end_timeout,
        "trust_projects": True if args.trust_projects else None,
        "hooks": False if args.no_hooks else None,
        "durable": True if args.durable else None,
    }
    try:
        config = build_config(flags, config_file=args.config)
    except RunnerConfigError as e:
        return fail(f"runner: {e}", 2)
    setup_logging(args.log_level, "auto")
    return asyncio.run(run_runner(config))


def add_subcommand(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "runner",
        help="run Claude Code sessions on this host for the bridge (new/resume/interrupt)",
        description="Connect out to the bridge's hook server and start, resume, interrupt and "
        "type into Claude Code sessions in tmux when people with the right level ask from "
        "Matrix. Only the projects given here are used. See docs/runner.md.",
    )
    p.add_argument("--config", type=Path, help="a YAML file with these settings (flags win)")
    p.add_argument("--url", help="the bridge's hook server URL (default: $CLAUDE_BRIDGE_URL)")
    p.add_argument("--token", help="this host's hook token (default: $CLAUDE_BRIDGE_TOKEN)")
    p.add_argument("--host", help="this host's name in Matrix (default: the short hostname)")
    p.add_argument(
        "--project",
        action="append",
        metavar="NAME=DIR",
        help="a project sessions may start in (repeatable); no other directory is ever used",
    )
    p.add_argument("--claude", help="Claude Code (default: $CLAUDE_CODE_BIN, else claude on PATH)")
    p.add_argument(
        "--arg",
        action="append",
        metavar="ARG",
        help="an argument added to every session, e.g. --arg=--model --arg=opus (repeatable)",
    )
    p.add_argument("--max-sessions", type=int, help="sessions running at once (default: 4)")
    p.add_argument(
        "--accept-from",
        action="append",
        metavar="@USER:SERVER",
        help="take jobs only from these Matrix users (repeatable; default: whoever the bridge "
        "allows)",
    )
    p.add_argument("--state-dir", help="journal and lock (default: ~/.local/state/claude-bridge)")
    p.add_argument("--tmux", help="the tmux binary (default: tmux)")
    p.add_argument(
        "--tmux-socket",
        help="a tmux socket name (-L) or path (-S) instead of the user's default server",
    )
    p.add_argument("--wait", type=int, help="long-poll seconds (default: 25, at most 55)")
    p.add_argument("--end-timeout", type=float, help="seconds from /exit to kill (default: 10)")
    p.add_argument(
        "--trust-projects",
        action="store_true",
        help="mark the projects trusted in ~/.claude.json instead of refusing to start there",
    )
    p.add_argument(
        "--no-hooks",
        action="store_true",
        help="don't pass the bridge's hooks with --settings (they are installed already)",
    )
    p.add_argument("--durable", action="store_true", help="hooks through the spooling shim")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(func=run)
