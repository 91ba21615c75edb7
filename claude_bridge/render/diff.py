"""Edits and writes as unified diffs: what changed is more telling than "file updated"."""

from __future__ import annotations

import difflib
from typing import Any

from claude_bridge.render.tools import relative

EDIT_TOOLS = frozenset({"Edit", "MultiEdit", "Write", "NotebookEdit"})


def unified_diff(
    tool_name: str,
    tool_input: dict[str, Any],
    cwd: str | None,
    context: int,
    response: Any = None,
) -> str | None:
    """The change an editing call makes, as a unified diff; ``None`` if it is not an edit.

    Claude Code's own ``structuredPatch`` (in the PostToolUse response) is preferred since it
    carries real line numbers; otherwise the diff is computed from the call's input.
    """

    def s(key: str, source: dict[str, Any] = tool_input) -> str:
        value = source.get(key)
        return value if isinstance(value, str) else ""

    path = relative(s("file_path") or s("notebook_path"), cwd) or "file"
    if tool_name not in EDIT_TOOLS:
        return None
    patch = _structured_patch(response, path)
    if patch:
        return patch
    pairs: list[tuple[str, str]]
    if tool_name == "Edit":
        pairs = [(s("old_string"), s("new_string"))]
    elif tool_name == "MultiEdit":
        edits = [e for e in tool_input.get("edits") or [] if isinstance(e, dict)]
        pairs = [(s("old_string", e), s("new_string", e)) for e in edits]
    elif tool_name == "Write":
        pairs = [("", s("content"))]
    elif tool_name == "NotebookEdit":
        pairs = [("", s("new_source"))]
    else:
        return None
    chunks = []
    for old, new in pairs:
        lines = difflib.unified_diff(
            old.splitlines(),
            new.splitlines(),
            fromfile="/dev/null" if tool_name == "Write" else _side("a", path),
            tofile=_side("b", path),
            n=context,
            lineterm="",
        )
        chunks.append("\n".join(lines))
    return "\n".join(c for c in chunks if c) or None


def _structured_patch(response: Any, path: str) -> str | None:
    hunks = response.get("structuredPatch") if isinstance(response, dict) else None
    if not isinstance(hunks, list) or not hunks:
        return None
    out = [f"--- {_side('a', path)}", f"+++ {_side('b', path)}"]
    for hunk in hunks:
        if not isinstance(hunk, dict) or not isinstance(hunk.get("lines"), list):
            return None
        nums = [hunk.get(k) for k in ("oldStart", "oldLines", "newStart", "newLines")]
        if not all(isinstance(n, int) for n in nums):
            return None
        out.append("@@ -{},{} +{},{} @@".format(*nums))
        out.extend(str(line) for line in hunk["lines"])
    return "\n".join(out)


def _side(prefix: str, path: str) -> str:
    """git's ``a/``/``b/`` prefixes for paths in the project; absolute paths as they are."""
    return path if path.startswith("/") else f"{prefix}/{path}"
