"""Reading the transcript after a gap and turning what is missing into hook events to store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from mautrix.util.async_db import Database

from claude_bridge.catchup.coverage import CATCHUP_KEY, missing_items, shown_by
from claude_bridge.catchup.gaps import GapWindow
from claude_bridge.catchup.marker import CATCHUP_EVENT
from claude_bridge.catchup.transcript import Item, parse_items, read_tail
from claude_bridge.config.sections.catchup import CatchupConfig
from claude_bridge.events.catalogue import (
    POST_TOOL_USE,
    POST_TOOL_USE_FAILURE,
    PRE_TOOL_USE,
    STOP,
    USER_PROMPT_SUBMIT,
)
from claude_bridge.events.models import HookEvent
from claude_bridge.log import get_logger
from claude_bridge.store import HookEventLog, now_ms

log = get_logger("catchup")

SLACK_MS = 60_000
"""Items written this long before the gap began are candidates too: a hook reaches the bridge a
little after its transcript line is written, so the last lost event may predate the failure."""
LOOKBACK_ROWS = 100_000
"""Stored events this far back (by id) from the gap's start are searched for what is shown."""


def timestamp_ms(stamp: str) -> int | None:
    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def synthetic_events(items: list[Item], omitted: int, event: HookEvent) -> list[dict[str, Any]]:
    """The marker and one hook input per item, as Claude Code would have sent them."""
    base = {"session_id": event.session_id, "cwd": event.cwd}
    stamps = [s for s in (timestamp_ms(i.timestamp) for i in items) if s is not None]
    out: list[dict[str, Any]] = [
        {
            **base,
            "hook_event_name": CATCHUP_EVENT,
            "recovered": len(items),
            "omitted": omitted,
            "first_ms": min(stamps, default=None),
            "last_ms": max(stamps, default=None),
        }
    ]
    for item in items:
        data: dict[str, Any] = {**base, CATCHUP_KEY: item.uuid}
        tool = {
            "tool_name": item.tool_name,
            "tool_input": item.tool_input,
            "tool_use_id": item.tool_use_id,
        }
        if item.kind == "prompt":
            data.update(hook_event_name=USER_PROMPT_SUBMIT.name, prompt=item.text)
        elif item.kind == "text":
            data.update(hook_event_name=STOP.name, last_assistant_message=item.text)
        elif item.kind == "tool_use":
            data.update(hook_event_name=PRE_TOOL_USE.name, **tool)
        elif item.is_error:
            data.update(hook_event_name=POST_TOOL_USE_FAILURE.name, error=item.text, **tool)
        elif item.images:
            # As an MCP tool's content blocks: the renderer shows their text and posts the images.
            text = [{"type": "text", "text": item.text}] if item.text else []
            response = [*text, *item.images]
            data.update(hook_event_name=POST_TOOL_USE.name, tool_response=response, **tool)
        else:
            data.update(hook_event_name=POST_TOOL_USE.name, tool_response=item.text, **tool)
        out.append(data)
    return out


class CatchUp:
    def __init__(self, config: CatchupConfig, db: Database) -> None:
        self.config = config
        self.db = db
        self.roots = [Path(d).expanduser().resolve() for d in config.transcript_dirs]

    @cached_property
    def log(self) -> HookEventLog:  # reads only: the hook path's own Outbox does the writing
        return HookEventLog(self.db)

    def transcript_file(self, event: HookEvent) -> Path | None:
        """The event's transcript if it is one we may read: a *.jsonl file under a root."""
        if not event.transcript_path or "\x00" in event.transcript_path:
            return None
        path = Path(event.transcript_path).expanduser()
        if not path.is_absolute() or path.suffix != ".jsonl":
            return None
        real = path.resolve()  # symlinks out of the roots do not count as inside
        if not any(real.is_relative_to(root) for root in self.roots) or not real.is_file():
            return None
        return real

    async def boot_window(self) -> GapWindow:
        """The gap a restart may have left: since the last event the previous run stored."""
        last = await self.log.last_stored()
        if last is None:
            return GapWindow(now_ms(), 0)
        return GapWindow(last[1], int(last[0]))

    async def recover(
        self, thread_id: str, event: HookEvent, current: dict[str, Any], window: GapWindow
    ) -> list[dict[str, Any]]:
        """The synthetic events to store before ``current``; ``[]`` when nothing is missing."""
        path = self.transcript_file(event) if self.config.enabled else None
        if path is None:
            return []
        try:
            data, _ = await asyncio.to_thread(read_tail, path, self.config.max_bytes)
        except OSError as e:
            log.info("transcript unreadable, no catch-up", thread_id=thread_id, error=str(e))
            return []
        since = window.since_ms - SLACK_MS
        items = [
            i
            for i in parse_items(data, event.session_id)
            if (timestamp_ms(i.timestamp) or since) >= since
        ]
        if not items:
            return []
        payloads = await self.log.payloads_after(thread_id, window.since_id - LOOKBACK_ROWS)
        gap = missing_items(items, shown_by(_decoded(payloads)), current)
        if not gap:
            return []
        kept = gap[-self.config.max_items :]
        log.info(
            "caught up from the transcript", thread_id=thread_id, items=len(kept), gap=len(gap)
        )
        return synthetic_events(kept, len(gap) - len(kept), event)


def _decoded(payloads: Iterable[str]) -> Iterable[dict[str, Any]]:
    for payload in payloads:
        try:
            data = json.loads(payload)
        except ValueError:
            continue
        if isinstance(data, dict):
            yield data
