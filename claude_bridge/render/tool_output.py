"""What a successful tool call's output shows: a diff, a checklist, console output, file lines.

Everything here is the text under a call's line (tool_events.py puts it in the thread or the
timeline). Paths in file lists and search results are shown relative to the project, like on the
call's line.
"""

from __future__ import annotations

from typing import Any

from claude_bridge.events.models import PostToolUse
from claude_bridge.render.blocks import Frame
from claude_bridge.render.content import Env, project_dir
from claude_bridge.render.diff import EDIT_TOOLS, unified_diff
from claude_bridge.render.images import encoded_images
from claude_bridge.render.text import esc, plural
from claude_bridge.render.tools import language_for, output_text, relative_lines, todo_text

Shown = tuple[str, Frame, str]
"""(text, frame, attachment kind) of an output."""

# Their output lists paths (a file list, path:line:match).
_PATH_LISTS = frozenset({"Grep", "Glob", "LS"})


def tool_output(event: PostToolUse, env: Env) -> Shown | None:
    """What to show of a successful call's output; None: nothing."""
    return shaped_output(
        event.tool_name,
        event.tool_input,
        event.tool_response,
        project_dir(event, env),
        diffs=env.opts.show_diffs,
        context=env.opts.diff_context_lines,
    )


def shaped_output(
    name: str,
    tool_input: dict[str, Any],
    response: Any,
    cwd: str | None,
    *,
    diffs: bool = True,
    context: int = 3,
) -> Shown | None:
    """What to show of a call's output (the room's and the Markdown export's); None: nothing.
    ``diffs``: edits as unified diffs with ``context`` lines around each change."""
    shown = _shown(name, tool_input, response, cwd, diffs, context)
    if shown is None:
        return None
    text, frame, _ = shown
    return shown if text.strip() or frame.tail_body else None


def _shown(
    name: str, tool_input: dict[str, Any], response: Any, cwd: str | None, diffs: bool, context: int
) -> Shown | None:
    if diffs and name in EDIT_TOOLS:
        diff = unified_diff(name, tool_input, cwd, context, response)
        if diff:
            return diff, Frame(language="diff"), "diff"
        content = tool_input.get("content")
        if name == "Write" and isinstance(content, str) and content.strip():
            # Over a file whose old content is unknown: what it holds now, not a made-up diff.
            path = tool_input.get("file_path")
            language = language_for(path) if isinstance(path, str) else None
            return content.rstrip("\n"), Frame(language=language), "content"
    if name == "TodoWrite" and todo_text(tool_input):
        return todo_text(tool_input), Frame(style="plain"), "todos"
    if name == "Bash":
        return bash(tool_input, response)
    if name == "Read" and (read := _read(tool_input, response)) is not None:
        return read
    text = output_text(response)
    if name in _PATH_LISTS:
        text = relative_lines(text, cwd)
    # A subagent's report is Markdown written for people, like Claude's replies.
    return text, Frame(style="markdown") if name in ("Task", "Agent") else Frame(), "output"


def bash(tool_input: dict[str, Any], response: Any) -> Shown:
    command = tool_input.get("command")
    output = output_text(response)
    if isinstance(response, dict) and encoded_images(response):
        output = ""  # a data URI: the image itself is posted (render/images.py)
    text = f"$ {command}\n{output}" if isinstance(command, str) else output
    tail = ""
    if isinstance(response, dict):
        if response.get("interrupted"):
            tail = "⏹️ interrupted"
        elif response.get("backgroundTaskId"):
            tail = f"⏳ running in the background ({response['backgroundTaskId']})"
        elif response.get("isImage"):
            tail = "🖼️ image output"
    if not output.strip() and not tail:
        tail = "(no output)"
    return text, Frame(language="console", tail_body=tail), "output"


def _read(tool_input: dict[str, Any], response: Any) -> Shown | None:
    """A Read: which lines of how many, highlighted by the file's language; an image as a note
    (its bytes are no text to show)."""
    file = response.get("file") if isinstance(response, dict) else None
    if not isinstance(file, dict):
        return None
    if isinstance(file.get("base64"), str):
        return _image(file), Frame(style="plain"), "output"
    if isinstance(file.get("cells"), list):
        return _notebook(file["cells"])
    content = file.get("content")
    if not isinstance(content, str):
        return None
    path = file.get("filePath") or tool_input.get("file_path")
    if not content.strip():
        return "(empty)", Frame(style="plain"), "file"
    lead = _lines_read(file)
    frame = Frame(
        lead_body=lead,
        lead_html=f"<i>{esc(lead)}</i>" if lead else "",
        language=language_for(path) if isinstance(path, str) else None,
    )
    return content, frame, "file"


def _lines_read(file: dict[str, Any]) -> str:
    """``lines 10–14 of 63``, or ``63 lines`` for a whole file; empty if the CLI did not say."""
    start, count, total = (file.get(k) for k in ("startLine", "numLines", "totalLines"))
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in (start, count, total)):
        return ""
    assert isinstance(start, int) and isinstance(count, int) and isinstance(total, int)
    if start <= 1 and count >= total:
        return plural(total, "line")
    return f"lines {start}–{start + max(count, 1) - 1} of {total}"


def _image(file: dict[str, Any]) -> str:
    kind = file.get("type") if isinstance(file.get("type"), str) else "image"
    dims = file.get("dimensions")
    size = ""
    if isinstance(dims, dict):
        w, h = dims.get("originalWidth"), dims.get("originalHeight")
        if isinstance(w, int) and isinstance(h, int):
            size = f", {w}×{h}"
    return f"🖼️ {kind}{size}"


def _notebook(cells: list[Any]) -> Shown:
    """A notebook's cells: each one's source, then its outputs' text; an image output as a note
    (the image itself is posted beside it, render/images.py)."""
    parts = []
    for number, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict):
            continue
        kind = cell.get("cellType") if isinstance(cell.get("cellType"), str) else "cell"
        source = cell.get("source") if isinstance(cell.get("source"), str) else ""
        lines = [f"# [{number}] {kind}", source]
        outputs = cell.get("outputs")
        for output in outputs if isinstance(outputs, list) else []:
            if not isinstance(output, dict):
                continue
            if isinstance(output.get("text"), str) and output["text"]:
                lines.append(output["text"])
            image = output.get("image")
            if isinstance(image, dict):
                lines.append(f"🖼️ {image.get('media_type') or 'image'}")
        parts.append("\n".join(line for line in lines if line))
    return "\n\n".join(parts) or "(empty)", Frame(style="plain"), "output"
