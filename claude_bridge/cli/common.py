"""What the subcommands share."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", type=Path, default=Path("config.yaml"), help="config file")


def fail(message: str, code: int = 1) -> int:
    print(f"claude-bridge: {message}", file=sys.stderr)
    return code
