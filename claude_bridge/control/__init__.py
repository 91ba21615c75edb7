"""Steering a live Claude Code session from Matrix: messages, approvals, commands, roles.

The parts are wired by ``control.service.Control``; its config section is
``claude_bridge.config.sections.control``.
"""
