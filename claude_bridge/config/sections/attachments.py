"""The ``bridge.attachments`` section: files and images operators send to Claude from Matrix.

Every field has a ``description`` because the example config is generated from them.
"""

from __future__ import annotations

from pydantic import Field

from claude_bridge.config.sections.base import Section

MIB = 1024 * 1024
DEFAULT_DIR = "attachments"
DEFAULT_LOCAL = "~/.cache/claude-bridge/attachments"


class AttachmentsConfig(Section):
    """Operators' m.image, m.file, m.video and m.audio on their way to Claude."""

    enabled: bool = Field(
        True,
        description="Forward operators' files and images to Claude. Off: they stay in the room "
        "and the room is told so.",
    )
    max_bytes: int = Field(
        20 * MIB,
        ge=1,
        description="Largest file the bridge downloads from the homeserver for Claude; a larger "
        "one is answered in the room and not forwarded.",
    )
    session_max_bytes: int = Field(
        200 * MIB,
        ge=1,
        description="Most bytes of files one session may hold (withdrawn ones do not count); a "
        "file beyond it is answered in the room and not forwarded.",
    )
    directory: str = Field(
        DEFAULT_DIR,
        description="Where the bridge keeps the files until the host fetches them (relative to "
        "the config file's directory); one 0700 folder per session.",
    )
    local_directory: str = Field(
        DEFAULT_LOCAL,
        description="For hook tokens marked local (Claude Code on the bridge's machine, as the "
        "bridge's user): where the bridge itself puts the files Claude opens, one 0700 folder "
        "per session. Command-path hooks (--durable, the waiter) always use this default on "
        "their own host.",
    )
    allow_read: bool = Field(
        True,
        description="Answer allow at once when Claude asks to Read exactly the path of a file an "
        "operator attached to that same session (no second tap on the prompt). Off: such a Read "
        "is asked in the room like any other tool call.",
    )
    keep_days: int = Field(
        7,
        ge=0,
        description="Days after a session ended (or last received a file) before its files are "
        "deleted, on the bridge and in the local folder. 0: at the next hourly sweep.",
    )
