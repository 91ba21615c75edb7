"""Shared helpers for the renderer tests: payloads, rendering shortcuts, Matrix validity."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from claude_bridge.events.models import HookEvent
from claude_bridge.events.parse import parse_hook_event
from claude_bridge.render import OutboundMessage, RenderContext, render_event
from claude_bridge.render.trim import MATRIX_EVENT_LIMIT, content_size

from .clients import unsupported

HERE = Path(__file__).resolve().parent
SNAPSHOTS = HERE / "snapshots"


def repo_root() -> Path:
    """The directory holding pyproject.toml above this file (the repo, wherever it is cloned)."""
    for parent in HERE.parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    raise RuntimeError(f"no pyproject.toml above {HERE}")


PAYLOADS = repo_root().parent / "shared" / "claude-code" / "hook-payloads"
RECORDED = repo_root() / "tests" / "fixtures" / "hook-payloads"
"""Payloads recorded from Claude Code 2.1.332 (see the README there)."""
BASE = {"session_id": "3eb5f21d-5dcb-43a8-9ab8-939331f73b6b", "cwd": "/home/dev/projects/demo-app"}


def payload_files() -> list[Path]:
    return sorted(PAYLOADS.glob("*.json"))


def load_payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / name).read_text(encoding="utf-8"))
    return data


def load_recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDED / name).read_text(encoding="utf-8"))
    return data


def make_ctx(**kwargs: Any) -> RenderContext:
    fields: dict[str, Any] = {"thread_id": "3eb5f21d-5dcb-43a8-9ab8-939331f73b6b"}
    fields["project"] = "demo-app"
    fields.update(kwargs)
    return RenderContext(**fields)


def event(hook_event_name: str, **fields: Any) -> HookEvent:
    return parse_hook_event({**BASE, "hook_event_name": hook_event_name, **fields})


def render(data: dict[str, Any] | HookEvent, **ctx: Any) -> list[OutboundMessage]:
    ev = data if isinstance(data, HookEvent) else parse_hook_event(data)
    return render_event(ev, make_ctx(**ctx))


def assert_valid(messages: Iterable[OutboundMessage]) -> None:
    """Every message is content a homeserver accepts and a client can show."""
    for msg in messages:
        assert isinstance(msg, OutboundMessage)
        content = msg.content
        assert isinstance(content, dict)
        encoded = json.dumps(content, ensure_ascii=False).encode("utf-8")  # must not raise
        assert len(encoded) < MATRIX_EVENT_LIMIT - 8192, len(encoded)
        assert content_size(content) == len(encoded)
        if msg.event_type == "m.room.message":
            assert isinstance(content.get("msgtype"), str)
            assert isinstance(content.get("body"), str)
            assert "m.mentions" in content
            if "formatted_body" in content:
                assert content["format"] == "org.matrix.custom.html"
                assert isinstance(content["formatted_body"], str)
                # Every tag shows on Element X too (clients.py: its allow-list and source).
                assert unsupported(content["formatted_body"]) == [], content["formatted_body"]
        else:
            assert msg.state_key is not None
        if msg.attachment is not None:
            assert content["msgtype"] == "m.file"
            assert content["info"]["size"] == len(msg.attachment.data)
        if msg.sender is not None:
            assert msg.sender == msg.sender.lower()
            assert all(c.isalnum() or c in "._=-" for c in msg.sender)


def everything(messages: Iterable[OutboundMessage]) -> str:
    """All text that leaves for Matrix, attachments and display names included."""
    parts = []
    for msg in messages:
        parts.append(json.dumps(msg.content, ensure_ascii=False))
        parts.append(msg.sender_displayname or "")
        if msg.attachment is not None:
            parts.append(msg.attachment.data.decode("utf-8"))
            parts.append(msg.attachment.filename)
    return "\n".join(parts)


def serialise(messages: Iterable[OutboundMessage]) -> list[dict[str, Any]]:
    out = []
    for msg in messages:
        item: dict[str, Any] = {
            k: getattr(msg, k)
            for k in ("event_type", "state_key", "sender", "sender_displayname", "anchor")
            if getattr(msg, k) is not None
        }
        for k in ("thread_root", "replaces"):
            if getattr(msg, k) is not None:
                item[k] = getattr(msg, k)
        item["content"] = msg.content
        if msg.attachment is not None:
            item["attachment"] = {
                "filename": msg.attachment.filename,
                "mimetype": msg.attachment.mimetype,
                "text": msg.attachment.data.decode("utf-8"),
            }
        out.append(item)
    return out
