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
    """The change an editing call makes, as a unified diff; ``None`` if it is not an edit, or
    the change cannot be shown as one (a Write over a file whose old content is unknown).

    Claude Code's own ``structuredPatch`` (in the PostToolUse response) is preferred since it
    carries real line numbers and whole lines. Otherwise the diff is computed from the call's
    input, which holds only the changed text: its hunks get a bare ``@@`` header, since where
    they fall in the file is not known and a made-up ``@@ -1 +1 @@`` would say otherwise.
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
    if tool_name == "Write":
        # A new file is a diff from nothing, with true line numbers; over an existing file the
        # old content is unknown here.
        if not (isinstance(response, dict) and response.get("type") == "create"):
            return None
        lines = difflib.unified_diff(
            [], s("content").splitlines(), "/dev/null", _side("b", path), n=context, lineterm=""
        )
        return "\n".join(lines) or None
    pairs: list[tuple[str, str]]
    if tool_name == "Edit":
        pairs = [(s("old_string"), s("new_string"))]
    elif tool_name == "MultiEdit":
        edits = [e for e in tool_input.get("edits") or [] if isinstance(e, dict)]
        pairs = [(s("old_string", e), s("new_string", e)) for e in edits]
    else:  # NotebookEdit: the cell's new source; its old one is not in the input
        pairs = [("", s("new_source"))]
    hunks = [h for old, new in pairs for h in _hunks(old, new, context)]
    if not hunks:
        return None
    return "\n".join([f"--- {_side('a', path)}", f"+++ {_side('b', path)}", *hunks])


def _hunks(old: str, new: str, context: int) -> list[str]:
    """The changed lines of ``old`` → ``new`` with ``context`` lines around, each hunk under a
    bare ``@@`` (positions unknown)."""
    a, b = old.splitlines(), new.splitlines()
    out: list[str] = []
    for group in difflib.SequenceMatcher(None, a, b, autojunk=False).get_grouped_opcodes(context):
        out.append("@@")
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out.extend(f" {line}" for line in a[i1:i2])
                continue
            out.extend(f"-{line}" for line in a[i1:i2])
            out.extend(f"+{line}" for line in b[j1:j2])
    return out


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
        old_start, old_lines, new_start, new_lines = (int(n or 0) for n in nums)
        # The unified format's quirk (GNU diff, and jsdiff's formatPatch that Claude Code uses):
        # an empty side names the line before it.
        old_start -= 1 if old_lines == 0 and old_start > 0 else 0
        new_start -= 1 if new_lines == 0 and new_start > 0 else 0
        out.append(f"@@ -{old_start},{old_lines} +{new_start},{new_lines} @@")
        out.extend(str(line) for line in hunk["lines"])
    return "\n".join(out)


def _side(prefix: str, path: str) -> str:
    """git's ``a/``/``b/`` prefixes for paths in the project; absolute paths as they are."""
    return path if path.startswith("/") else f"{prefix}/{path}"
