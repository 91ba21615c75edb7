"""The ``claude-bridge`` parser, and the subcommands that run the bridge and write its files."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from claude_bridge import __version__
from claude_bridge.cli.common import config_arg


def cmd_run(args: argparse.Namespace) -> int:
    from claude_bridge.app import run_bridge
    from claude_bridge.config import ConfigError, load_config
    from claude_bridge.errors import ExitCode
    from claude_bridge.event_loop import EventLoopUnavailable, loop_factory
    from claude_bridge.log import setup_logging

    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"claude-bridge: {e}", file=sys.stderr)
        return int(ExitCode.CONFIG)
    setup_logging(config.logging.level, config.logging.format)
    try:
        factory = loop_factory(config.event_loop)
    except EventLoopUnavailable as e:
        print(f"claude-bridge: {e}", file=sys.stderr)
        return int(ExitCode.CONFIG)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(run_bridge(config, args.config.resolve().parent))


def cmd_generate_registration(args: argparse.Namespace) -> int:
    from claude_bridge.config import ConfigError
    from claude_bridge.registration import generate_registration

    try:
        generate_registration(args.config, args.output)
    except ConfigError as e:
        print(f"claude-bridge: {e}", file=sys.stderr)
        return 10
    print(f"Wrote {args.output} and new tokens into {args.config}.")
    print("Add the registration to Synapse's app_service_config_files and restart Synapse.")
    return 0


def cmd_example_config(args: argparse.Namespace) -> int:
    from claude_bridge.config.example import render_example

    text = render_example()
    if args.output is None or str(args.output) == "-":
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="claude-bridge", description="Matrix appservice bridge for Claude Code sessions"
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the bridge")
    config_arg(run)
    run.set_defaults(func=cmd_run)

    reg = sub.add_parser("generate-registration", help="write the Synapse appservice registration")
    config_arg(reg)
    reg.add_argument(
        "-o", "--output", type=Path, default=Path("registration/claude-registration.yaml")
    )
    reg.set_defaults(func=cmd_generate_registration)

    example = sub.add_parser("example-config", help="print the documented example config")
    example.add_argument("-o", "--output", type=Path, default=None)
    example.set_defaults(func=cmd_example_config)

    from claude_bridge.cli import install_hooks, operations, runner

    install_hooks.add_subcommand(sub)
    runner.add_subcommand(sub)
    operations.add_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
