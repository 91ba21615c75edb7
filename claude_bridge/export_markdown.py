"""``export --format markdown``: an export document as a transcript a person can read or share.

Pure: it works from the export document (see ``backup.py``), not the database.
"""

from __future__ import annotations

import json
import time
from typing import Any

from claude_bridge.events.catalogue import kind_of
from claude_bridge.history import describe_hook_event

_ROLE = {"user": "👤 prompt", "assistant": "🤖 Claude", "tool": "🔧 tool", "system": "·"}


def _when(ms: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(ms or 0) / 1000)) + "Z"


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines() or [""])


def thread_entries(entry: dict[str, Any]) -> list[tuple[int, str]]:
    """(time, Markdown) for each hook event, Matrix message and approval, in time order."""
    tables = entry.get("tables", {})
    sent: dict[Any, list[str]] = {}
    for row in tables.get("sent_event", []):
        sent.setdefault(row["hook_event_id"], []).append(row["event_id"])
    own_events = {e for ids in sent.values() for e in ids}
    out: list[tuple[int, str]] = []
    for row in tables.get("hook_event", []):
        if not kind_of(row["event_name"]).in_history:
            continue
        role, text = describe_hook_event(row["event_name"], row["payload"])
        ids = ", ".join(f"`{e}`" for e in sent.get(row["id"], [])) or "not in Matrix yet"
        out.append(
            (
                int(row["received_at"]),
                f"**{_ROLE.get(role, role)}** · {_when(row['received_at'])} · "
                f"{row['event_name']} → {ids}\n\n{_quote(text)}",
            )
        )
    for row in tables.get("matrix_event", []):
        if row["event_type"] != "m.room.message" or row["event_id"] in own_events:
            continue
        content = json.loads(row["event"]).get("content") or {}
        body = content["body"] if isinstance(content.get("body"), str) else "(redacted)"
        out.append(
            (
                int(row["received_at"]),
                f"**{row['sender']}** · {_when(row['received_at'])} · `{row['event_id']}`\n\n"
                f"{_quote(body)}",
            )
        )
    for row in tables.get("approval", []):
        decided = (
            f"{row.get('state')} by {row.get('decided_by')} at {_when(row.get('decided_at'))}"
            if row.get("decided_by")
            else str(row.get("state"))
        )
        out.append(
            (
                int(row.get("created_at") or 0),
                f"**🔐 approval** · {_when(row.get('created_at'))} · {row.get('tool_name')}: "
                f"{decided}",
            )
        )
    return sorted(out, key=lambda item: item[0])


def render_markdown(doc: dict[str, Any]) -> str:
    parts = [
        f"# claude-bridge export\n\nExported {doc.get('exported_at')} · "
        f"{len(doc.get('threads', []))} thread(s)\n"
    ]
    for entry in doc.get("threads", []):
        t = entry["thread"]
        parts.append(
            f"## {t.get('title') or t.get('project_name') or 'Claude Code'} · {t['id']}\n\n"
            f"| | |\n|---|---|\n"
            f"| session | `{t['session_id']}` |\n"
            f"| project | {t.get('project_name') or '?'} (`{t.get('project_path') or ''}`) |\n"
            f"| room | `{t.get('room_id') or 'not created'}` {t.get('alias') or ''} |\n"
            f"| ghost | `{t.get('ghost_mxid')}` |\n"
            f"| status | {t.get('status')} |\n"
            f"| created | {_when(t.get('created_at'))} |\n"
        )
        parts.extend(text + "\n" for _, text in thread_entries(entry))
    return "\n".join(parts)
