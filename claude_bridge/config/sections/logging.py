"""The ``logging`` section."""

from __future__ import annotations

from pydantic import Field

from claude_bridge.config.sections.base import Section


class LoggingConfig(Section):
    level: str = Field("INFO", description="Log level: DEBUG, INFO, WARNING or ERROR.")
    format: str = Field(
        "auto", description="'json' (one object per line), 'console', or 'auto' (console on a TTY)."
    )
