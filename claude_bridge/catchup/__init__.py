"""Catch-up: fill a room from the session transcript when hook events were lost.

Claude Code's ``http`` hooks fail open: while the bridge is down (or answers 503) Claude carries on
and those events are gone. The transcript (``transcript_path``) still has the conversation, and the
bridge can read it when it runs on the Claude Code host (the quickstart layout).

*When* — :class:`GapWatch` (in memory, no extra queries on the hot path) suspects a gap for a
live event when this process has not seen its thread before (the bridge was down or restarted
since the thread's last event), or when storing some event failed since the thread's last event.
Replays from the shim's spool never trigger it: the shim has those events and replays them all.

*What* — the transcript items (prompts, Claude's text, tool calls and results) written since
shortly before the gap began, after the last one the room already shows (matched by content:
prompt text, ``tool_use_id``, reply text, or the transcript id of an earlier catch-up) and before
the item the current event itself mirrors. A false alarm therefore finds nothing and posts nothing.

*How* — synthetic hook events (a ``org.claude_bridge.catchup`` marker, then UserPromptSubmit,
PreToolUse, PostToolUse(Failure) and Stop carrying ``claude_bridge_catchup``) stored in the same
transaction as, and before, the current event: the outbox's order, durability and exactly-once
delivery apply to them unchanged.
"""

from __future__ import annotations

from claude_bridge.catchup.coverage import CATCHUP_KEY, Shown, covered, missing_items, shown_by
from claude_bridge.catchup.gaps import GapWatch, GapWindow
from claude_bridge.catchup.marker import CATCHUP_EVENT, marker_content, with_catchup_marker
from claude_bridge.catchup.recover import CatchUp, synthetic_events

__all__ = [
    "CATCHUP_EVENT",
    "CATCHUP_KEY",
    "CatchUp",
    "GapWatch",
    "GapWindow",
    "Shown",
    "covered",
    "marker_content",
    "missing_items",
    "shown_by",
    "synthetic_events",
    "with_catchup_marker",
]
