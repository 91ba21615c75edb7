"""The whole config file: one field per top-level section."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from claude_bridge.config.sections import (
    AppserviceConfig,
    BridgeConfig,
    HomeserverConfig,
    HooksConfig,
    LoggingConfig,
    Section,
)
from claude_bridge.event_loop import EventLoop
from claude_bridge.ids import MatrixNames


class Config(Section):
    homeserver: HomeserverConfig = Field(
        default_factory=HomeserverConfig, description="The homeserver."
    )
    appservice: AppserviceConfig = Field(
        default_factory=AppserviceConfig, description="The appservice side (Synapse ↔ bridge)."
    )
    database: str = Field(
        "sqlite:claude-bridge.db",
        description="postgres://user:pass@host/db, or sqlite:PATH (relative to the config file).",
    )
    hooks: HooksConfig = Field(default_factory=HooksConfig, description="Claude Code hook ingest.")
    bridge: BridgeConfig = Field(default_factory=BridgeConfig, description="Bridge behaviour.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logging.")
    event_loop: EventLoop = Field(
        EventLoop.AUTO,
        description="The bridge process's event loop: auto (uvloop where it is installed, as it is "
        "by default; asyncio's own elsewhere), uvloop (fail at start-up without it) or asyncio.",
    )

    @field_validator("database")
    @classmethod
    def _db_url(cls, v: str) -> str:
        if not v.startswith(("postgres://", "postgresql://", "sqlite:")):
            raise ValueError("must start with postgres://, postgresql:// or sqlite:")
        return v

    def matrix_names(self) -> MatrixNames:
        """The bridge's Matrix ids, by this config's domain, prefixes and bot."""
        return MatrixNames(
            domain=self.homeserver.domain,
            ghost_prefix=self.bridge.ghost_prefix,
            alias_prefix=self.bridge.alias_prefix,
            bot_localpart=self.appservice.bot_username,
        )

    def database_url(self, base_dir: Path) -> str:
        """The database URL with a relative SQLite path resolved against ``base_dir``."""
        if not self.database.startswith("sqlite:"):
            return self.database
        path = Path(self.database.removeprefix("sqlite:").removeprefix("//"))
        return f"sqlite:{(base_dir / path).resolve()}"
