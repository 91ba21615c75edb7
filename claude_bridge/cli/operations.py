"""The operations subcommands: ``setup``, ``doctor``, ``export``, ``import``, ``migrate-db``, ``mcp``.

Each parses its arguments and calls the module that does the work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from claude_bridge.cli.common import config_arg, fail
from claude_bridge.config import Config, ConfigError, load_config, write_private

DEFAULT_REGISTRATION = Path("registration/claude-registration.yaml")
Subparsers = argparse._SubParsersAction


def database_url(url: str) -> str:
    """A database URL given on the command line; a relative SQLite path is relative to here."""
    return Config(database=url).database_url(Path.cwd())


def _database_url(args: argparse.Namespace) -> str:
    if args.database:
        return database_url(args.database)
    return load_config(args.config).database_url(args.config.resolve().parent)


def cmd_setup(args: argparse.Namespace) -> int:
    from claude_bridge.provision import provision

    try:
        done = provision(args.config, args.registration)
    except ConfigError as e:
        return fail(str(e), 10)
    for line in done or [f"{args.config} and {args.registration} are in place; nothing to do"]:
        print(line)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from claude_bridge import doctor

    return doctor.run(args.config, args.registration)


async def _with_db(url: str, work: Any) -> Any:
    from claude_bridge.store import create_database

    db = create_database(url)
    await db.start()
    try:
        return await work(db)
    finally:
        await db.stop()


def _write(output: Path | None, text: str) -> None:
    if output is None or str(output) == "-":
        sys.stdout.write(text)
    else:  # hook payloads and room messages: private from the start
        write_private(output, lambda f: f.write(text))


def cmd_export(args: argparse.Namespace) -> int:
    from claude_bridge.export_markdown import render_markdown
    from claude_bridge.store.backup import BackupError, export_threads

    try:
        url = _database_url(args)
        doc = asyncio.run(
            _with_db(url, lambda db: export_threads(db, None if args.all else args.thread))
        )
    except (ConfigError, BackupError, ValidationError) as e:
        return fail(str(e))
    except Exception as e:  # the database cannot be opened: say so without a traceback
        return fail(f"{type(e).__name__}: {e}")
    # JSON is a backup and must restore verbatim; Markdown is for reading and sharing: scrubbed.
    text = (
        _markdown_scrubber(args).text(render_markdown(doc))
        if args.format == "markdown"
        else json.dumps(doc, indent=1) + "\n"
    )
    _write(args.output, text)
    print(f"exported {len(doc['threads'])} thread(s)", file=sys.stderr)
    return 0


def _markdown_scrubber(args: argparse.Namespace) -> Any:
    """The config's redaction and the bridge's own tokens; the default patterns when the
    export reads a database without a readable config."""
    from claude_bridge.config.sections.mirror import RedactConfig
    from claude_bridge.matrix.outgoing import outgoing_scrubber
    from claude_bridge.render.scrub import scrubber_for

    try:
        return outgoing_scrubber(load_config(args.config))
    except (ConfigError, OSError):
        return scrubber_for(RedactConfig())


def cmd_import(args: argparse.Namespace) -> int:
    from claude_bridge.store.backup import BackupError, import_threads

    try:
        doc = json.loads(args.file.read_text())
        url = _database_url(args)
        result = asyncio.run(_with_db(url, lambda db: import_threads(db, doc)))
    except (OSError, ValueError, ConfigError, BackupError) as e:  # ValidationError is a ValueError
        return fail(str(e))
    except Exception as e:
        return fail(f"{type(e).__name__}: {e}")
    rows = ", ".join(f"{n} {table}" for table, n in result.rows.items() if n)
    print(f"imported {result.threads} thread(s): {rows or 'no other rows'}")
    return 0


def cmd_migrate_db(args: argparse.Namespace) -> int:
    from claude_bridge.store.backup import BackupError, migrate

    try:
        result = asyncio.run(migrate(database_url(args.source), database_url(args.target)))
    except (BackupError, ValidationError) as e:
        return fail(str(e))
    except Exception as e:
        return fail(f"{type(e).__name__}: {e}")
    print(f"copied {result.threads} thread(s) from {args.source} to the new database")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    """For container health checks: exit 0 when the running bridge reports ready."""
    import urllib.error
    import urllib.request

    url = args.url
    if url is None:
        try:
            hooks = load_config(args.config).hooks
        except ConfigError as e:
            return fail(str(e), 10)
        host = "127.0.0.1" if hooks.host in ("0.0.0.0", "::", "") else hooks.host
        url = f"http://{host}:{hooks.port}/health"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as resp:
            print(resp.read().decode())
            return 0
    except urllib.error.HTTPError as e:  # 503: not ready; the body says why
        print(e.read().decode())
        return 1
    except OSError as e:
        return fail(f"{url}: {e}")


def cmd_mcp(args: argparse.Namespace) -> int:
    from claude_bridge import mcp_server

    return mcp_server.run(args.url)


def add_subcommands(sub: Subparsers) -> None:
    setup = sub.add_parser(
        "setup",
        help="write a config (from the example + environment) and the registration "
        "if missing; idempotent",
    )
    setup.add_argument("--config", type=Path, required=True)
    setup.add_argument("--registration", type=Path, required=True)
    setup.set_defaults(func=cmd_setup)

    doctor = sub.add_parser("doctor", help="check config, database, homeserver and registration")
    config_arg(doctor)
    doctor.add_argument(
        "-r",
        "--registration",
        type=Path,
        default=DEFAULT_REGISTRATION,
        help="the registration file Synapse loads (default: %(default)s)",
    )
    doctor.set_defaults(func=cmd_doctor)

    export = sub.add_parser("export", help="write threads' full history as JSON or Markdown")
    config_arg(export)
    export.add_argument("--database", help="read this database URL instead of the config's")
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("--thread", action="append", metavar="ID", help="a thread id (repeatable)")
    which.add_argument("--all", action="store_true", help="every thread")
    export.add_argument("--format", choices=("json", "markdown"), default="json")
    export.add_argument("-o", "--output", type=Path, default=None, help="file, or - for stdout")
    export.set_defaults(func=cmd_export)

    imp = sub.add_parser("import", help="restore threads from a JSON export into an empty database")
    config_arg(imp)
    imp.add_argument("--database", help="write this database URL instead of the config's")
    imp.add_argument("file", type=Path, help="a file written by 'export --format json'")
    imp.set_defaults(func=cmd_import)

    migrate = sub.add_parser("migrate-db", help="copy every thread to another (empty) database")
    migrate.add_argument("--from", dest="source", required=True, metavar="URL")
    migrate.add_argument("--to", dest="target", required=True, metavar="URL")
    migrate.set_defaults(func=cmd_migrate_db)

    health = sub.add_parser("health", help="ask the running bridge's /health (exit 0: ready)")
    config_arg(health)
    health.add_argument("--url", help="the /health URL (default: from hooks.listen)")
    health.add_argument("--timeout", type=float, default=3.0)
    health.set_defaults(func=cmd_health)

    mcp = sub.add_parser("mcp", help="run the MCP server (stdio) for Claude Code")
    mcp.add_argument("--url", help="the bridge's hook server (default: $CLAUDE_BRIDGE_URL)")
    mcp.set_defaults(func=cmd_mcp)
