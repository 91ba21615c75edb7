"""What a tool call looks like: its one-line summary and its output as text."""

from __future__ import annotations

import json
import posixpath
from typing import Any

from claude_bridge.render.text import esc, first_line, one_line, plural

_ICONS = {
    "Bash": "💻",
    "BashOutput": "💻",
    "KillShell": "🛑",
    "Edit": "✏️",
    "MultiEdit": "✏️",
    "NotebookEdit": "✏️",
    "Write": "📝",
    "Read": "📖",
    "Grep": "🔍",
    "Glob": "🔍",
    "LS": "📂",
    "WebFetch": "🌐",
    "WebSearch": "🌐",
    "Task": "🤖",
    "Agent": "🤖",
    "TodoWrite": "📋",
    "ExitPlanMode": "📋",
}
_PATH_TOOLS = frozenset({"Edit", "MultiEdit", "Write", "Read", "NotebookEdit", "LS"})
# Input keys tried in order for tools without a dedicated summary (including MCP tools).
_SUMMARY_KEYS = (
    "command", "file_path", "notebook_path", "path", "pattern", "url", "query",
    "description", "prompt", "name", "title", "subject",
)  # fmt: skip


def icon(tool_name: str) -> str:
    return "🔌" if tool_name.startswith("mcp__") else _ICONS.get(tool_name, "🔧")


def display_name(tool_name: str) -> str:
    """``mcp__github__create_issue`` → ``github › create_issue``; others unchanged."""
    if tool_name.startswith("mcp__"):
        server, _, tool = tool_name[5:].partition("__")
        return f"{server} › {tool}" if tool else server
    return tool_name or "tool"


def relative(path: str, cwd: str | None) -> str:
    """A path inside the session's directory relative to it (the directory itself is ``.``):
    shorter on a phone. Paths outside it stay absolute, so they stand out."""
    base = (cwd or "").rstrip("/")
    if not base or not path.startswith(base):
        return path
    rest = path[len(base) :]
    if rest.strip("/") == "":
        return "."
    return rest[1:] if rest.startswith("/") else path


def relative_lines(text: str, cwd: str | None) -> str:
    """``text`` with each line that starts with a path in ``cwd`` starting relative instead
    (a file list, ``path:line:match`` search results)."""
    base = (cwd or "").rstrip("/")
    if not base:
        return text
    prefix = base + "/"
    return "\n".join(
        line[len(prefix) :] if line.startswith(prefix) else line for line in text.split("\n")
    )


def read_range(tool_input: dict[str, Any]) -> str:
    """The lines a Read asks for (``offset`` is the first line, ``limit`` how many), e.g.
    ``lines 10–14``; empty for the whole file."""
    offset, limit = tool_input.get("offset"), tool_input.get("limit")
    first = offset if isinstance(offset, int) and offset > 0 else None
    count = limit if isinstance(limit, int) and limit > 0 else None
    if first and count:
        return f"lines {first}–{first + count - 1}"
    if first:
        return f"from line {first}"
    return f"lines 1–{count}" if count else ""


_LANGUAGES = {
    "py": "python", "pyi": "python", "js": "javascript", "mjs": "javascript", "cjs": "javascript",
    "jsx": "jsx", "ts": "typescript", "tsx": "tsx", "json": "json", "md": "markdown",
    "sh": "bash", "bash": "bash", "zsh": "bash", "yml": "yaml", "yaml": "yaml", "toml": "toml",
    "ini": "ini", "cfg": "ini", "rs": "rust", "go": "go", "java": "java", "kt": "kotlin",
    "swift": "swift", "c": "c", "h": "c", "cc": "cpp", "cpp": "cpp", "hpp": "cpp", "cs": "csharp",
    "rb": "ruby", "php": "php", "html": "html", "css": "css", "scss": "scss", "sql": "sql",
    "xml": "xml", "diff": "diff", "patch": "diff", "lua": "lua", "vue": "vue", "tf": "hcl",
}  # fmt: skip
_FILE_LANGUAGES = {"dockerfile": "dockerfile", "makefile": "makefile"}


def language_for(path: str) -> str | None:
    """The code block language (syntax highlighting) for a file, from its name."""
    name = posixpath.basename(path).lower()
    if name in _FILE_LANGUAGES:
        return _FILE_LANGUAGES[name]
    stem, dot, ext = name.rpartition(".")
    return _LANGUAGES.get(ext) if dot and stem else None


def summary(tool_name: str, tool_input: dict[str, Any], cwd: str | None, limit: int) -> str:
    """The argument part of a tool call's line: the command, the file, the pattern…"""

    def s(key: str) -> str:
        value = tool_input.get(key)
        return value if isinstance(value, str) else ""

    if tool_name in _PATH_TOOLS:
        text = relative(s("file_path") or s("notebook_path") or s("path"), cwd)
        lines = read_range(tool_input) if tool_name == "Read" else ""
        text += f" · {lines}" if lines and text else lines
    elif tool_name == "Bash":
        text = first_line(s("command"), limit)
    elif tool_name in ("Grep", "Glob"):
        where = relative(s("path"), cwd)
        text = s("pattern") + (f" in {where}" if where and where != "." else "")
        text += f" ({s('glob')})" if s("glob") else ""
    elif tool_name in ("Task", "Agent"):
        kind = s("subagent_type")
        text = s("description") + (f" ({kind})" if kind else "")
    elif tool_name == "TodoWrite":
        todos = [t for t in tool_input.get("todos") or [] if isinstance(t, dict)]
        done = sum(1 for t in todos if t.get("status") == "completed")
        text = f"{plural(len(todos), 'item')}, {done} done"
    else:
        text = next((s(k) for k in _SUMMARY_KEYS if s(k)), "")
        if not text:
            text = next((v for v in tool_input.values() if isinstance(v, str) and v), "")
    return one_line(text, limit)


def tool_line(
    tool_name: str,
    tool_input: dict[str, Any],
    cwd: str | None,
    limit: int,
    *,
    prefix: str = "",
    note: str = "",
) -> tuple[str, str]:
    """(body, formatted_body) of the timeline line for a call, e.g. ``💻 Bash: npm test``."""
    name = display_name(tool_name)
    arg = summary(tool_name, tool_input, cwd, limit)
    lead = prefix or icon(tool_name)
    body = f"{lead} {name}: {arg}" if arg else f"{lead} {name}"
    html = f"{lead} <b>{esc(name)}</b>" + (f": <code>{esc(arg)}</code>" if arg else "")
    if note:
        body += f" — {note}"
        html += f" — {esc(note)}"
    return body, html


def output_text(response: Any) -> str:
    """A tool response as readable text: Bash streams, text blocks, or pretty JSON."""
    if response is None:
        return ""
    if isinstance(response, str):
        return response
    blocks = _text_blocks(response)  # MCP tools
    if blocks is not None:
        return blocks
    if isinstance(response, dict):
        if "stdout" in response or "stderr" in response:
            parts = [response.get("stdout"), response.get("stderr")]
            return "\n".join(p for p in parts if isinstance(p, str) and p)
        file = response.get("file")
        if isinstance(file, dict) and isinstance(file.get("content"), str):
            return str(file["content"])  # Read
        for key in ("output", "result", "content", "text", "message"):
            if isinstance(response.get(key), str):
                return str(response[key])
        blocks = _text_blocks(response.get("content"))  # Task/Agent: the subagent's report
        if blocks is not None:
            return blocks
        filenames = response.get("filenames")  # Glob, Grep (files_with_matches)
        if isinstance(filenames, list) and all(isinstance(f, str) for f in filenames):
            return "\n".join(filenames) or "(no matches)"
    return json.dumps(response, ensure_ascii=False, indent=2, default=str)


def _text_blocks(value: Any) -> str | None:
    """The text of a list of ``{"type": "text", "text": …}`` blocks; None if it is not one.
    Image blocks among them are left out (``render/images.py`` shows them as images)."""
    if not isinstance(value, list) or not value:
        return None
    blocks = [b for b in value if not (isinstance(b, dict) and b.get("type") == "image")]
    texts = [b.get("text") if isinstance(b, dict) else None for b in blocks]
    if not all(isinstance(t, str) for t in texts):
        return None
    return "\n".join(str(t) for t in texts)


def attachment_name(tool_name: str, tool_input: dict[str, Any], kind: str) -> str:
    """A file name for an attached full output, e.g. ``app.py.diff``, ``app.py`` (what a Read
    returned) or ``bash-output.txt``."""
    path = tool_input.get("file_path") or tool_input.get("notebook_path")
    if kind == "diff" and isinstance(path, str) and posixpath.basename(path):
        return f"{posixpath.basename(path)}.diff"
    if kind == "file" and isinstance(path, str) and posixpath.basename(path):
        return posixpath.basename(path)
    stem = "".join(c if c.isalnum() else "-" for c in display_name(tool_name).lower())
    return f"{stem.strip('-')[:40] or 'tool'}-{kind}.txt"


_TODO_MARKS = {"completed": "☑", "in_progress": "▶", "pending": "☐"}


def todo_text(tool_input: dict[str, Any]) -> str:
    """A TodoWrite call as a checklist, one todo per line."""
    lines = []
    for todo in tool_input.get("todos") or []:
        if isinstance(todo, dict):
            mark = _TODO_MARKS.get(str(todo.get("status")), "☐")
            lines.append(f"{mark} {one_line(str(todo.get('content') or ''), 200)}")
    return "\n".join(lines)
