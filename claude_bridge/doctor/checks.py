"""The checks that need no homeserver: config, tokens, registration file, file modes, database."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from mautrix.util.async_db import Database
from ruamel.yaml import YAML, YAMLError

from claude_bridge.config import GENERATE, Config
from claude_bridge.files import open_to_others
from claude_bridge.log import mau_logger
from claude_bridge.ownership import orphans
from claude_bridge.registration import build_registration
from claude_bridge.store.database import (
    create_private_sqlite,
    load_migrations,
    schema_version,
    sqlite_path,
)
from claude_bridge.store.sqlite import use_bridge_connections
from claude_bridge.store.threads import ThreadStore
from claude_bridge.token_access import TokenAccess

MIN_HOOK_TOKEN = 16


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def format_checks(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{'✓' if c.ok else '✗'} {c.name.ljust(width)}  {c.detail}")
        if not c.ok and c.fix:
            lines.append(f"  {' ' * width}  → {c.fix}")
    failed = sum(not c.ok for c in checks)
    lines.append("all checks passed" if not failed else f"{failed} check(s) failed")
    return "\n".join(lines)


def check_tokens(config: Config) -> list[Check]:
    checks = []
    unset = [k for k in ("as_token", "hs_token") if getattr(config.appservice, k) == GENERATE]
    checks.append(
        Check(
            "appservice tokens",
            False,
            f"{', '.join(unset)} not generated yet",
            "run 'claude-bridge generate-registration -c CONFIG -o REGISTRATION' and give "
            "Synapse the registration",
        )
        if unset
        else Check("appservice tokens", True, "as_token and hs_token are set")
    )
    tokens = config.hooks.secrets()
    weak = sorted(name for name, secret in tokens.items() if len(secret) < MIN_HOOK_TOKEN)
    if not tokens:
        checks.append(
            Check(
                "hook tokens",
                False,
                "hooks.tokens is empty: every hook gets 401",
                "add one token per Claude Code host under hooks.tokens, e.g. "
                "laptop: $(openssl rand -hex 24)",
            )
        )
    elif weak:
        checks.append(
            Check(
                "hook tokens",
                False,
                f"shorter than {MIN_HOOK_TOKEN} characters: {', '.join(weak)}",
                "use long random tokens (openssl rand -hex 24)",
            )
        )
    else:
        checks.append(Check("hook tokens", True, f"{len(tokens)} token(s): {', '.join(tokens)}"))
    return checks


def check_registration(config: Config, path: Path) -> Check:
    fix = (
        f"regenerate it with 'claude-bridge generate-registration -c CONFIG -o {path}', "
        "or point --registration at the file Synapse loads; then restart Synapse"
    )
    try:
        found = YAML(typ="safe").load(path.read_text())
    except FileNotFoundError:
        return Check("registration", False, f"{path} does not exist", fix)
    except (OSError, YAMLError) as e:
        return Check("registration", False, f"{path} cannot be read: {e}", fix)
    if not isinstance(found, dict):
        return Check("registration", False, f"{path} is not a YAML mapping", fix)
    want = build_registration(config)
    keys = ("id", "url", "as_token", "hs_token", "sender_localpart", "namespaces", "rate_limited")
    differ = [k for k in keys if found.get(k) != want[k]]
    if differ:  # names only: the values may be secrets
        return Check(
            "registration", False, f"{path}: {', '.join(differ)} differ from the config", fix
        )
    return Check("registration", True, f"{path} matches the config (tokens, namespaces, URL)")


def check_file_modes(config: Config, config_path: Path, registration_path: Path) -> Check:
    """Files holding secrets or raw hook payloads that others can read (or replace)."""
    files = [config_path, registration_path]
    database = sqlite_path(config.database_url(config_path.parent))
    if database is not None:
        files += [database, *(database.with_name(database.name + s) for s in ("-wal", "-shm"))]
    problems = [p for p in map(open_to_others, files) if p]
    if problems:
        return Check(
            "file modes",
            False,
            "; ".join(problems),
            "these files hold tokens or hook payloads: make them 0600 (directories 0700), "
            "owned by the user the bridge runs as",
        )
    return Check("file modes", True, "config, registration and database are private (0600)")


async def check_database(url: str) -> Check:
    fix = "check 'database' in the config: the server must be up and the credentials right"
    create_private_sqlite(url)  # a database doctor creates is private like the bridge's
    use_bridge_connections()  # the connections the bridge reads its store with
    db = Database.create(url, log=mau_logger("doctor.db"))  # no upgrade table: look, don't migrate
    try:
        async with asyncio.timeout(10):
            await db.start()
            if not await db.table_exists("schema_version"):
                return Check(
                    "database", True, "reachable, empty: the bridge creates the schema at start"
                )
            version = await schema_version(db)
    except Exception as e:
        detail = "timed out" if isinstance(e, TimeoutError) else f"{type(e).__name__}: {e}"
        return Check("database", False, f"cannot open {_redact(url)}: {detail}", fix)
    finally:
        try:
            await db.stop()
        except Exception:  # never started: nothing to close
            pass
    known = len(load_migrations())
    if version > known:
        return Check(
            "database",
            False,
            f"schema v{version} is newer than this bridge (v{known})",
            "run the bridge version that last used this database, or a newer one",
        )
    note = "current" if version == known else f"migrated to v{known} at the next start"
    return Check("database", True, f"reachable, schema v{version} ({note})")


async def check_thread_owners(config: Config, url: str) -> Check:
    """Threads whose owning hook token is not configured (renamed or removed): refused on every
    path until it is back or a token lists it under ``renamed_from``."""
    name = "thread owners"
    use_bridge_connections()  # the connections the bridge reads its store with
    db = Database.create(url, log=mau_logger("doctor.db"))
    try:
        async with asyncio.timeout(10):
            await db.start()
            if not await db.table_exists("thread"):
                return Check(name, True, "no threads yet")
            owners = await ThreadStore(db).owners()
    except Exception as e:
        return Check(name, False, f"cannot read the threads: {type(e).__name__}: {e}")
    finally:
        try:
            await db.stop()
        except Exception:  # never started: nothing to close
            pass
    access = TokenAccess(config.hooks)
    left = orphans(owners, access)
    if left:
        return Check(
            name,
            False,
            "; ".join(o.describe() for o in left) + ": no configured hook token owns them",
            "if a token was renamed, list its old name under hooks.tokens.<new name>.renamed_from "
            "(the bridge moves the threads at its next start); their sessions are refused until then",
        )
    renamed = sorted(o for o in owners if o is not None and o in access.renames)
    detail = f"{sum(map(len, owners.values()))} thread(s), each owned by a configured token"
    if renamed:
        detail += f" ({', '.join(map(repr, renamed))} renamed: moved at the next start)"
    return Check(name, True, detail)


def _redact(url: str) -> str:
    head, sep, tail = url.partition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, creds = head.partition("://")
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{tail}"
