"""Reading a Claude Code session transcript (``transcript_path``) into what a room would show.

The transcript is the session's JSONL log under ``~/.claude/projects/<project>/<session>.jsonl``:
one object per line, ``type`` ``user`` / ``assistant`` (others: ``summary``,
``file-history-snapshot``, ``system``, … are not conversation), ``uuid``, ``sessionId``,
``timestamp``, ``isSidechain``, ``isMeta`` and ``message`` with Anthropic-API ``content`` — a
string, or blocks ``text`` / ``thinking`` / ``tool_use`` (assistant) and ``tool_result`` (user).
Claude Code appends while it works, so the last line may be incomplete.

Only the mirrorable parts become :class:`Item` s: the user's prompts, Claude's text, tool calls
and their results. Thinking, meta entries (injected context), slash-command plumbing and subagent
side chains are left out, as the live hooks leave them out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from claude_bridge.render.images import MAX_PICTURES

ItemKind = Literal["prompt", "text", "tool_use", "tool_result"]

MAX_ITEM_CHARS = 65_536
"""Longer text is cut here: the renderer trims and attaches anyway, this bounds what is stored."""
MAX_IMAGE_CHARS = 1024 * 1024
"""A tool result's images are kept, as the content blocks the transcript holds, while their base64
adds up to no more than this (a live hook's body is capped at ``hooks.max_body_bytes``, 1 MiB by
default); the rest are ``[image]`` in the text."""

# User entries that are Claude Code's own plumbing, not something a person typed.
_NOT_PROMPTS = (
    "<command-",
    "<local-command-",
    "<system-reminder>",
    "<bash-",
    "[Request interrupted",
    "Caveat: The messages below",
)


@dataclass(frozen=True)
class Item:
    kind: ItemKind
    uuid: str
    timestamp: str
    text: str = ""
    tool_use_id: str | None = None
    tool_name: str = ""
    tool_input: dict[str, Any] = field(default_factory=dict)
    is_error: bool = False
    images: tuple[dict[str, Any], ...] = ()
    """A tool result's image blocks (``{"type": "image", "source": {"type": "base64", …}}``)."""


def read_tail(path: Path, max_bytes: int) -> tuple[bytes, bool]:
    """The last ``max_bytes`` of the file, starting at a line boundary; and whether it was cut."""
    with path.open("rb") as f:
        size = f.seek(0, 2)
        start = max(0, size - max_bytes)
        f.seek(start)
        data = f.read(size - start)
    if start > 0:
        data = data[data.find(b"\n") + 1 :] if b"\n" in data else b""
    return data, start > 0


def parse_items(data: bytes, session_id: str) -> list[Item]:
    """The mirrorable items of the session's entries, in transcript order."""
    items: list[Item] = []
    tools: dict[str, tuple[str, dict[str, Any]]] = {}
    for line in data.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # the line Claude Code is writing right now, or not a transcript at all
        if not isinstance(entry, dict) or entry.get("sessionId") != session_id:
            continue  # another session's lines never leak into this room
        if entry.get("isSidechain") or entry.get("isMeta"):
            continue
        for item in _entry_items(entry, tools):
            if item.kind == "tool_use" and item.tool_use_id:
                tools[item.tool_use_id] = (item.tool_name, item.tool_input)
            items.append(item)
    return items


def _entry_items(entry: dict[str, Any], tools: dict[str, tuple[str, dict[str, Any]]]) -> list[Item]:
    kind = entry.get("type")
    message = entry.get("message")
    uuid, ts = entry.get("uuid"), entry.get("timestamp")
    if kind not in ("user", "assistant") or not isinstance(message, dict):
        return []
    if not isinstance(uuid, str) or not uuid:
        return []
    stamp = ts if isinstance(ts, str) else ""
    content = message.get("content")
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(blocks, list):
        return []
    out: list[Item] = []
    for n, block in enumerate(blocks):
        if not isinstance(block, dict):
            continue
        # One entry may hold several blocks: each item gets its own stable id.
        item_id = uuid if n == 0 else f"{uuid}#{n}"
        btype = block.get("type")
        if btype == "text" and isinstance(block.get("text"), str) and block["text"].strip():
            text = block["text"][:MAX_ITEM_CHARS]
            if kind == "assistant":
                out.append(Item("text", item_id, stamp, text=text))
            elif not text.lstrip().startswith(_NOT_PROMPTS):
                out.append(Item("prompt", item_id, stamp, text=text))
        elif btype == "tool_use" and kind == "assistant" and isinstance(block.get("id"), str):
            name = block.get("name")
            tool_input = block.get("input")
            out.append(
                Item(
                    "tool_use",
                    item_id,
                    stamp,
                    tool_use_id=block["id"],
                    tool_name=name if isinstance(name, str) else "",
                    tool_input=tool_input if isinstance(tool_input, dict) else {},
                )
            )
        elif btype == "tool_result" and isinstance(block.get("tool_use_id"), str):
            name, tool_input = tools.get(block["tool_use_id"], ("", {}))
            text, images = _result(block.get("content"))
            out.append(
                Item(
                    "tool_result",
                    item_id,
                    stamp,
                    text=text[:MAX_ITEM_CHARS],
                    tool_use_id=block["tool_use_id"],
                    tool_name=name,
                    tool_input=tool_input,
                    is_error=block.get("is_error") is True,
                    images=images,
                )
            )
    return out


def _result(content: Any) -> tuple[str, tuple[dict[str, Any], ...]]:
    """A tool result's text, and the image blocks kept to be shown: as many as a live call shows
    (:data:`MAX_PICTURES`) within :data:`MAX_IMAGE_CHARS`."""
    if isinstance(content, str):
        return content, ()
    if not isinstance(content, list):
        return "", ()
    parts: list[str] = []
    images: list[dict[str, Any]] = []
    left = MAX_IMAGE_CHARS
    for part in content:
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            parts.append(part["text"])
        elif part.get("type") == "image":
            data = _base64_of(part)
            if data is not None and len(images) < MAX_PICTURES and len(data) <= left:
                left -= len(data)
                images.append({"type": "image", "source": dict(part["source"])})
            else:
                parts.append("[image]")
    return "\n".join(parts), tuple(images)


def _base64_of(block: dict[str, Any]) -> str | None:
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") != "base64":
        return None
    data, kind = source.get("data"), source.get("media_type")
    return data if isinstance(data, str) and isinstance(kind, str) else None
