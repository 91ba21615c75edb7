"""The bridge's own REST API (threads and their messages), served by the hook server."""

from __future__ import annotations

from claude_bridge.api.threads import ThreadsAPI, register_routes

__all__ = ["ThreadsAPI", "register_routes"]
