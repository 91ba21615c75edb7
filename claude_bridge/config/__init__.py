"""The bridge's YAML configuration: the section models (``sections/``), the whole file
(``root``), loading, validation and saving (``load``), and the generated example (``example``).

Every field has a description; ``config.example.yaml`` is generated from them
(``claude-bridge example-config``) and a test fails when the checked-in file drifts.
"""

from __future__ import annotations

from claude_bridge.config.load import (
    ENV_PREFIX,
    ConfigError,
    apply_overrides,
    env_overrides,
    load_config,
    parse_config,
    update_config_file,
    write_private,
)
from claude_bridge.config.root import Config
from claude_bridge.config.sections import (
    GENERATE,
    AppserviceConfig,
    CatchupConfig,
    HooksConfig,
    HookToken,
    PermissionLevel,
    TokenRole,
)

__all__ = [
    "ENV_PREFIX",
    "GENERATE",
    "AppserviceConfig",
    "CatchupConfig",
    "Config",
    "ConfigError",
    "HookToken",
    "HooksConfig",
    "PermissionLevel",
    "TokenRole",
    "apply_overrides",
    "env_overrides",
    "load_config",
    "parse_config",
    "update_config_file",
    "write_private",
]
