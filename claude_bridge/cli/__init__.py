"""``claude-bridge``: the command line. ``main`` builds the parser; each subcommand parses its
arguments and calls the part that does the work (``operations``: setup, doctor, export, import,
migrate-db, health, mcp)."""

from __future__ import annotations

from claude_bridge.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
