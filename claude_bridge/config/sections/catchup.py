"""The ``hooks.catchup`` section: filling a room from the session transcript after events were
lost (``claude_bridge.catchup``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CatchupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        True,
        description="After events were lost (bridge down, or it could not store them), post the "
        "missing prompts, replies and tool calls from the session transcript, after a 'caught up "
        "after an outage' notice. Needs the transcripts readable by the bridge (same host).",
    )
    transcript_dirs: list[str] = Field(
        default_factory=lambda: ["~/.claude/projects"],
        description="Only transcripts (*.jsonl) under these directories are read; a hook input's "
        "transcript_path anywhere else is ignored.",
    )
    max_items: int = Field(
        200, ge=1, le=5000, description="Most items posted by one catch-up (the latest are kept)."
    )
    max_bytes: int = Field(
        8 * 1024 * 1024,
        ge=64 * 1024,
        description="How much of the end of a transcript is read when looking for a gap.",
    )
