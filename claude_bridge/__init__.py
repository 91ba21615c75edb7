"""claude-bridge: a Matrix application-service bridge for Claude Code sessions."""

from __future__ import annotations

__version__ = "0.1.0"
