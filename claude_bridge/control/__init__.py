"""Steering a live Claude Code session from Matrix: messages, approvals, commands, roles.

Kept import-light: ``claude_bridge.config`` imports ``control.options``; the parts are wired by
``control.service.Control``.
"""
