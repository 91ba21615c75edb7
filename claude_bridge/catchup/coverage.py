"""What a room already shows, from its thread's stored hook events, and what it lacks."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from claude_bridge.catchup.transcript import Item
from claude_bridge.events.catalogue import (
    MESSAGE_DISPLAY,
    PERMISSION_REQUEST,
    POST_TOOL_BATCH,
    POST_TOOL_USE,
    POST_TOOL_USE_FAILURE,
    PRE_TOOL_USE,
    STOP,
    USER_PROMPT_SUBMIT,
    kind_of,
)

CATCHUP_KEY = "claude_bridge_catchup"
"""Field of a recovered hook event: the transcript item it came from."""


@dataclass
class Shown:
    """What a thread's stored hook events put (or will put) into its room."""

    prompts: list[str]
    tool_uses: set[str]
    tool_results: set[str]
    texts: set[str]
    items: set[str]


def shown_by(rows: Iterable[dict[str, Any]]) -> Shown:
    shown = Shown([], set(), set(), set(), set())
    streams: dict[str, dict[int, str]] = {}
    for data in rows:
        kind = kind_of(data.get("hook_event_name"))
        if isinstance(data.get(CATCHUP_KEY), str):
            shown.items.add(data[CATCHUP_KEY])
        use_id = data.get("tool_use_id")
        if kind is USER_PROMPT_SUBMIT and isinstance(data.get("prompt"), str):
            shown.prompts.append(data["prompt"].strip())
        elif kind in (PRE_TOOL_USE, PERMISSION_REQUEST) and isinstance(use_id, str):
            shown.tool_uses.add(use_id)
        elif kind in (POST_TOOL_USE, POST_TOOL_USE_FAILURE) and isinstance(use_id, str):
            shown.tool_uses.add(use_id)
            shown.tool_results.add(use_id)
        elif kind is POST_TOOL_BATCH and isinstance(data.get("tool_calls"), list):
            for call in data["tool_calls"]:
                if isinstance(call, dict) and isinstance(call.get("tool_use_id"), str):
                    shown.tool_uses.add(call["tool_use_id"])
                    shown.tool_results.add(call["tool_use_id"])
        elif kind is STOP and isinstance(data.get("last_assistant_message"), str):
            shown.texts.add(data["last_assistant_message"].strip())
        elif kind is MESSAGE_DISPLAY and isinstance(data.get("message_id"), str):
            index, delta = data.get("index"), data.get("delta")
            if isinstance(index, int) and isinstance(delta, str):
                streams.setdefault(data["message_id"], {}).setdefault(index, delta)
    for chunks in streams.values():
        shown.texts.add("".join(chunks[i] for i in sorted(chunks)).strip())
    return shown


def covered(items: list[Item], shown: Shown) -> list[bool]:
    """Which items the room shows. Prompts are matched in order, so a repeated prompt
    ("continue") that was lost is not mistaken for an earlier one that was shown."""
    flags = []
    next_prompt = 0
    for item in items:
        hit = item.uuid in shown.items
        if item.kind == "prompt" and not hit:
            text = item.text.strip()
            for i in range(next_prompt, len(shown.prompts)):
                if shown.prompts[i] == text:
                    hit, next_prompt = True, i + 1
                    break
        elif item.kind == "tool_use":
            hit = hit or item.tool_use_id in shown.tool_uses
        elif item.kind == "tool_result":
            hit = hit or item.tool_use_id in shown.tool_results
        elif item.kind == "text":
            hit = hit or item.text.strip() in shown.texts
        flags.append(hit)
    return flags


def missing_items(items: list[Item], before: Shown, current: dict[str, Any]) -> list[Item]:
    """Items after the last one shown, up to (not including) what ``current`` itself shows."""
    shown = covered(items, before)
    last = max((i for i, hit in enumerate(shown) if hit), default=-1)
    now = shown_by([current])
    if kind_of(current.get("hook_event_name")) in (POST_TOOL_USE, POST_TOOL_USE_FAILURE):
        now.tool_uses.clear()  # its call's line may be in the gap: the output goes under it
    mine = covered(items, now)
    end = next((i for i in range(last + 1, len(items)) if mine[i]), len(items))
    return items[last + 1 : end]
