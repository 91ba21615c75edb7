"""Edits and writes as unified diffs: what changed is more telling than "file updated"."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from claude_bridge.render.tools import relative

EDIT_TOOLS = frozenset({"Edit", "MultiEdit", "Write", "NotebookEdit"})


@dataclass(frozen=True)
class Seen:
    """What the session last saw a file hold (a Read's result, or what an edit or write left):
    its lines from ``first_line`` on, the whole file if ``whole`` (a Read may return part)."""

    text: str
    first_line: int = 1
    whole: bool = True


def unified_diff(
    tool_name: str,
    tool_input: dict[str, Any],
    cwd: str | None,
    context: int,
    response: Any = None,
    seen: Seen | None = None,
) -> str | None:
    """The change an editing call makes, as a unified diff; ``None`` if it is not an edit, or
    the change cannot be shown as one (a Write over a file whose old content is unknown).

    Claude Code's own ``structuredPatch`` (in the PostToolUse response) is preferred since it
    carries real line numbers and whole lines. Before the call ran (an approval) the change is
    applied to what the session last saw of the file (``seen``), for the same. Otherwise the
    diff is computed from the call's input, which holds only the changed text: its hunks get a
    bare ``@@`` header, since where they fall in the file is not known and a made-up
    ``@@ -1 +1 @@`` would say otherwise.
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
    header = [f"--- {_side('a', path)}", f"+++ {_side('b', path)}"]
    after = applied(tool_name, tool_input, seen) if seen is not None else None
    if seen is not None and after is not None:
        hunks = _hunks(seen.text, after, context, seen.first_line)
        return "\n".join([*header, *hunks]) if hunks else None
    if tool_name == "Write":
        # A new file is a diff from nothing, with true line numbers; over an existing file the
        # old content is unknown here.
        if not (isinstance(response, dict) and response.get("type") == "create"):
            return None
        hunks = _hunks("", s("content"), context, 1)
        return "\n".join(["--- /dev/null", header[1], *hunks]) if hunks else None
    pairs: list[tuple[str, str]]
    if tool_name == "Edit":
        pairs = [(s("old_string"), s("new_string"))]
    elif tool_name == "MultiEdit":
        pairs = [(s("old_string", e), s("new_string", e)) for e in _edits(tool_input)]
    else:  # NotebookEdit: the cell's new source; its old one is not in the input
        pairs = [("", s("new_source"))]
    hunks = [h for old, new in pairs for h in _hunks(old, new, context, None)]
    return "\n".join([*header, *hunks]) if hunks else None


def applied(tool_name: str, tool_input: dict[str, Any], seen: Seen) -> str | None:
    """What ``seen`` holds after the call, as Claude Code makes it (exact replacements: one
    match unless ``replace_all``); ``None`` if the call does not apply to it."""
    if tool_name == "Write":
        content = tool_input.get("content")
        return content if isinstance(content, str) and seen.whole else None
    if tool_name == "Edit":
        edits = [tool_input]
    elif tool_name == "MultiEdit":
        edits = _edits(tool_input)
    else:
        return None
    text = seen.text
    for edit in edits:
        old, new = edit.get("old_string"), edit.get("new_string")
        if not isinstance(old, str) or not isinstance(new, str) or not old:
            return None
        every = edit.get("replace_all") is True
        count = text.count(old)
        if count == 0 or (count > 1 and not every):
            return None
        text = text.replace(old, new, -1 if every else 1)
    return text


def seen_in(tool_name: str, tool_input: dict[str, Any], response: Any) -> tuple[str, Seen] | None:
    """(file path, what it held) that a successful call showed or left: a Read's lines, an
    edit's file (its ``originalFile`` with the edit applied), a Write's content."""
    path = tool_input.get("file_path")
    if not isinstance(path, str) or not path:
        return None
    if tool_name == "Write":
        content = tool_input.get("content")
        return (path, Seen(content)) if isinstance(content, str) else None
    response = response if isinstance(response, dict) else {}
    if tool_name == "Read":
        file = response.get("file")
        if not isinstance(file, dict) or not isinstance(file.get("content"), str):
            return None
        start, count, total = (file.get(k) for k in ("startLine", "numLines", "totalLines"))
        start = start if isinstance(start, int) and start > 0 else 1
        whole = start == 1 and isinstance(count, int) and count == total
        return path, Seen(str(file["content"]), start, whole)
    original = response.get("originalFile")
    if tool_name in ("Edit", "MultiEdit") and isinstance(original, str):
        after = applied(tool_name, tool_input, Seen(original))
        return (path, Seen(after)) if after is not None else None
    return None


def _edits(tool_input: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in tool_input.get("edits") or [] if isinstance(e, dict)]


def _hunks(old: str, new: str, context: int, first_line: int | None) -> list[str]:
    """The changed lines of ``old`` → ``new`` with ``context`` lines around. Each hunk's
    header gives its lines' numbers, ``old`` being the file from line ``first_line`` on; with
    ``first_line`` None where they are is unknown, and the header is a bare ``@@``."""
    a, b = old.splitlines(), new.splitlines()
    out: list[str] = []
    for group in difflib.SequenceMatcher(None, a, b, autojunk=False).get_grouped_opcodes(context):
        if first_line is None:
            out.append("@@")
        else:
            (_, i1, _, j1, _), (_, _, i2, _, j2) = group[0], group[-1]
            out.append(_header(i1 + first_line, i2 - i1, j1 + first_line, j2 - j1))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out.extend(f" {line}" for line in a[i1:i2])
                continue
            out.extend(f"-{line}" for line in a[i1:i2])
            out.extend(f"+{line}" for line in b[j1:j2])
    return out


def _header(old_start: int, old_lines: int, new_start: int, new_lines: int) -> str:
    # The unified format's quirk (GNU diff, and jsdiff's formatPatch that Claude Code uses): an
    # empty side names the line before it.
    old_start -= 1 if old_lines == 0 and old_start > 0 else 0
    new_start -= 1 if new_lines == 0 and new_start > 0 else 0
    return f"@@ -{old_start},{old_lines} +{new_start},{new_lines} @@"


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
        out.append(_header(*(int(n or 0) for n in nums)))
        out.extend(str(line) for line in hunk["lines"])
    return "\n".join(out)


def _side(prefix: str, path: str) -> str:
    """git's ``a/``/``b/`` prefixes for paths in the project; absolute paths as they are."""
    return path if path.startswith("/") else f"{prefix}/{path}"
