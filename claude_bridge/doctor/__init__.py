"""``claude-bridge doctor``: check a deployment end to end and say what to fix.

Each check prints ✓ or ✗, what it found and, when it fails, what to do. The checks follow the
path a message takes: the config, the hook tokens, the registration Synapse loaded, the database
(and that a configured token owns every thread), the homeserver, ``as_token`` (``whoami``), and the homeserver reaching the appservice (``ping``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path

import aiohttp

from claude_bridge.config import Config, ConfigError, load_config
from claude_bridge.doctor.checks import (
    Check,
    check_database,
    check_file_modes,
    check_registration,
    check_thread_owners,
    check_tokens,
    format_checks,
)
from claude_bridge.doctor.homeserver import check_homeserver

__all__ = ["Check", "format_checks", "run", "run_checks"]


def local_checks(
    config_path: Path, registration_path: Path, environ: Mapping[str, str]
) -> tuple[Config | None, list[Check]]:
    """The checks that need no network: config, tokens, registration."""
    try:
        config = load_config(config_path, environ)
    except ConfigError as e:
        fix = "fix the named keys (see config.example.yaml)"
        return None, [Check("config", False, str(e).replace("\n", "\n    "), fix)]
    checks = [Check("config", True, f"{config_path} is valid")]
    checks += check_tokens(config)
    checks.append(check_registration(config, registration_path))
    checks.append(check_file_modes(config, config_path, registration_path))
    return config, checks


async def run_checks(
    config_path: Path, registration_path: Path, environ: Mapping[str, str] | None = None
) -> list[Check]:
    environ = os.environ if environ is None else environ
    config, checks = local_checks(config_path, registration_path, environ)
    if config is None:
        return checks
    database = await check_database(config.database_url(config_path.parent))
    checks.append(database)
    if database.ok:
        checks.append(await check_thread_owners(config, config.database_url(config_path.parent)))
    async with aiohttp.ClientSession() as http:
        checks += await check_homeserver(config, http)
    return checks


def run(config_path: Path, registration_path: Path) -> int:
    checks = asyncio.run(run_checks(config_path, registration_path))
    print(format_checks(checks))
    return 0 if all(c.ok for c in checks) else 1
