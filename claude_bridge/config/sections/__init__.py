"""One module per section of the config file, each a pydantic model whose every field has a
description (the example config is generated from them). They import nothing of the bridge but
each other and the event catalogue: every layer may read its own section."""

from __future__ import annotations

from claude_bridge.config.sections.appservice import GENERATE, AppserviceConfig
from claude_bridge.config.sections.attachments import AttachmentsConfig
from claude_bridge.config.sections.base import Section
from claude_bridge.config.sections.bridge import BridgeConfig, PermissionLevel
from claude_bridge.config.sections.catchup import CatchupConfig
from claude_bridge.config.sections.control import ControlConfig
from claude_bridge.config.sections.homeserver import HomeserverConfig
from claude_bridge.config.sections.hooks import HooksConfig, HookToken, TokenRole
from claude_bridge.config.sections.logging import LoggingConfig
from claude_bridge.config.sections.mirror import MirrorConfig, RedactConfig

__all__ = [
    "GENERATE",
    "AppserviceConfig",
    "AttachmentsConfig",
    "BridgeConfig",
    "CatchupConfig",
    "ControlConfig",
    "HomeserverConfig",
    "HookToken",
    "HooksConfig",
    "LoggingConfig",
    "MirrorConfig",
    "PermissionLevel",
    "RedactConfig",
    "Section",
    "TokenRole",
]
