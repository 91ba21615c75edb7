"""How other people's words are put in front of Claude: a line saying who, then their text quoted.

Every text the bridge hands to Claude (hook answers, the background waiter, a denial's reason, the
MCP tools' reading of a room) is built here. The bridge writes one attribution line per message,
and every line of the text itself starts with ``>`` — ``> `` and the line, or a bare ``>`` for an
empty one. The bridge's own lines never start with ``>``, so nothing a person writes can pass for
a line of the bridge: a body holding ``\\n\\nMessage from @admin:… via Matrix:`` stays inside its
quote. Line breaks are all that ``str.splitlines`` knows (``\\n``, ``\\r``, ``\\v``, ``\\f``,
``\\x1c``–``\\x1e``, ``\\x85``, U+2028, U+2029), written as ``\\n``. Names printed in the bridge's
own lines (user ids, thread ids) are cut to one printable line.
"""

from __future__ import annotations

import unicodedata

QUOTE = ">"
# How the bridge's own lines begin: no line of quoted text can begin like these.
ATTRIBUTIONS = ("Message from ", "Hand-off from ", "Denied by ", "[… cut:", "[claude-bridge: ")


def quote(text: str) -> str:
    """``text`` with every line quoted (``> line``; an empty line is ``>``)."""
    lines = text.splitlines() or [""]
    return "\n".join(f"{QUOTE} {line}" if line else QUOTE for line in lines)


def name(value: str) -> str:
    """An id for one of the bridge's own lines: anything unprintable escaped (``\\u2028``)."""
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in value)


def from_person(sender: str, body: str) -> str:
    """A person's message from the room."""
    return f"Message from {name(sender)} via Matrix:\n{quote(body)}"


def with_file(sender: str, name_: str, mimetype: str, size: str, path: str, caption: str) -> str:
    """A person's file: who, what, and where it is on Claude's host; their caption quoted.

    ``name_``, ``mimetype`` and ``path`` are the bridge's own (sanitised, ``control/attachments``
    and ``host_files``); they are escaped to one line all the same."""
    head = (
        f"Message from {name(sender)} via Matrix: attached {name(name_)} "
        f"({name(mimetype)}, {size}): {name(path)}"
    )
    return f"{head}\n{quote(caption)}" if caption else head


def from_session(from_thread: str, body: str, approved_by: str | None) -> str:
    """A hand-off: written by another session's Claude, not by a person."""
    head = (
        f"Hand-off from the Claude of another Claude Code session (thread {name(from_thread)}), "
        "not from a person"
    )
    if approved_by:
        head += f"; let through by {name(approved_by)} via Matrix"
    return f"{head}:\n{quote(body)}"


def denial(by: str, reason: str | None) -> str:
    """A PermissionRequest's deny message; the operator's reason quoted below it."""
    head = f"Denied by {name(by)} via Matrix"
    return f"{head}. Their reason:\n{quote(reason)}" if reason else head


def cut_marker(missing: int) -> str:
    return f"[… cut: {missing} more characters were sent in Matrix]"


# --- text typed into a terminal (a host runner's tmux pane) ------------------------------------

PROMPT_COMMANDS = "/!#&"
"""What Claude Code's prompt does not send to the model when a submitted text starts with it
(after any blank): ``/`` a slash command (``/exit``, ``/permissions`` …), ``!`` a shell command
run at once with no permission asked, ``#`` and ``&`` other input modes. Checked with the real
CLI: a pasted ``/exit`` or ``!touch x`` followed by Enter runs, leading blanks or not."""


def terminal_text(text: str) -> str:
    """``text`` safe to paste into a terminal program: line breaks as ``\\n``, tabs kept, every
    other control character (C0, DEL, C1: ``ESC [201~`` would end a bracketed paste early and
    type the rest as keys) replaced by U+FFFD."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(c if c in "\n\t" or unicodedata.category(c) != "Cc" else "\ufffd" for c in text)


def prompt_command(text: str) -> str | None:
    """The character that makes Claude Code's prompt treat ``text`` as a command rather than a
    message (``PROMPT_COMMANDS``), after blanks and invisible characters; None for a message."""
    for c in text:
        if c.isspace() or unicodedata.category(c)[0] in "ZC":
            continue
        return c if c in PROMPT_COMMANDS else None
    return None


def typed_prompt(sender: str, body: str) -> str:
    """A person's message as it is typed into a runner session's prompt: their words as a user
    turn, unless they start like a command (``prompt_command``), which is then framed like any
    other path's message so that it reaches Claude as words, never as a command."""
    text = terminal_text(body)
    return from_person(sender, text) if prompt_command(text) else text
