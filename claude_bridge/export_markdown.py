"""``export --format markdown``: an export document as a transcript a person can read or share.

Each hook event reads as it does in the room (``render/transcript.py``): tool calls with their
output and diffs, MCP tools by their friendly names, replies as Markdown. Pure: it works from
the export document (see ``store/backup.py``), not the database.
"""

from __future__ import annotations

import json
import time
from typing import Any

from claude_bridge.events.catalogue import POST_TOOL_USE, POST_TOOL_USE_FAILURE, PRE_TOOL_USE
from claude_bridge.render.transcript import transcript_entry

_OUTCOMES = (POST_TOOL_USE.name, POST_TOOL_USE_FAILURE.name)


def _when(ms: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(ms or 0) / 1000)) + "Z"


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines() or [""])


def _payload(raw: Any) -> dict[str, Any]:
    try:
        data = json.loads(raw) if isinstance(raw, str) else {}
    except ValueError:
        data = {}
    return data if isinstance(data, dict) else {}


def _finished_calls(
    rows: list[dict[str, Any]], payloads: dict[Any, dict[str, Any]]
) -> dict[Any, Any]:
    """PostToolUse(Failure) row id → its PreToolUse row id. A finished call is one entry, at its
    outcome, which repeats the call's line; the PreToolUse's Matrix ids go with it."""
    pre: dict[str, Any] = {}
    found: dict[Any, Any] = {}
    for row in rows:
        use_id = payloads[row["id"]].get("tool_use_id")
        if not isinstance(use_id, str) or not use_id:
            continue
        if row["event_name"] == PRE_TOOL_USE.name:
            pre[use_id] = row["id"]
        elif row["event_name"] in _OUTCOMES and use_id in pre:
            found[row["id"]] = pre.pop(use_id)
    return found


def thread_entries(entry: dict[str, Any]) -> list[tuple[int, str]]:
    """(time, Markdown) for each hook event, Matrix message and approval, in time order."""
    tables = entry.get("tables", {})
    project = entry.get("thread", {}).get("project_path")
    sent: dict[Any, list[str]] = {}
    for row in tables.get("sent_event", []):
        sent.setdefault(row["hook_event_id"], []).append(row["event_id"])
    own_events = {e for ids in sent.values() for e in ids}
    out: list[tuple[int, str]] = []
    rows = tables.get("hook_event", [])
    payloads = {row["id"]: _payload(row["payload"]) for row in rows}
    calls = _finished_calls(rows, payloads)
    skipped = set(calls.values())
    for row in rows:
        if row["id"] in skipped:
            continue
        shown = transcript_entry(row["event_name"], payloads[row["id"]], project)
        if shown is None:
            continue
        hooks = [calls[row["id"]], row["id"]] if row["id"] in calls else [row["id"]]
        ids = ", ".join(f"`{e}`" for hook in hooks for e in sent.get(hook, []))
        text = f"{shown.title} · {_when(row['received_at'])} · {ids or 'not in Matrix yet'}"
        out.append((int(row["received_at"]), text + (f"\n\n{shown.body}" if shown.body else "")))
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
