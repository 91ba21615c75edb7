"""``claude-bridge install-hooks``: its arguments, what it tells the user, and the call to the
installer (``claude_bridge/installer.py``) that merges the hooks into a settings file."""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from claude_bridge.installer import (
    CLAUDE_CODE_VERSION,
    DEFAULT_TOKEN_ENV,
    HOOK_COMMAND,
    InstallError,
    apply,
    claude_version,
    default_hook_command,
    desired_hooks,
    is_ours,
    parse_version,
    project_settings_path,
    read_settings,
    user_settings_path,
)


def detect_claude_version() -> tuple[int, int, int] | None:
    exe = shutil.which("claude")
    return claude_version(exe) if exe else None


def _token_hint(token: str | None, token_env: str, config: Path | None) -> str:
    """What to tell the user about the token: an export line, never a file write."""
    if token is None:
        return (
            f"Set {token_env} to a hook token's secret (hooks.tokens in the bridge config) in "
            "the environment Claude Code starts from."
        )
    tokens: dict[str, str] = {}
    if config is not None:
        try:
            from claude_bridge.config import load_config  # heavy (pydantic): only when asked

            tokens = load_config(config).hooks.secrets()
        except Exception as e:
            print(f"install-hooks: can't read hook tokens from {config}: {e}", file=sys.stderr)
    if token in tokens:
        secret: str | None = tokens[token]
    elif token in tokens.values() or len(token) >= 24:
        secret = token  # looks like (or is) the secret itself
    else:
        secret = None  # a token name we can't resolve without --config
    if secret is None:
        return (
            f"Put the secret of hook token {token!r} (hooks.tokens.{token} in the bridge config) "
            f"in the environment Claude Code starts from, e.g. in your shell profile:\n"
            f"  export {token_env}='<secret of {token}>'"
        )
    return (
        "Put the token in the environment Claude Code starts from, e.g. in your shell profile "
        "(it is not written to any settings file):\n"
        f"  export {token_env}={shlex.quote(secret)}"
    )


def _refuse_empty(args: argparse.Namespace) -> str | None:
    """Why an empty ``--url`` or ``--token`` is refused: typed as ``--token "$VAR"`` in a shell
    where the variable is not set, it would install hooks posting nowhere or print a useless
    export line."""
    if args.url is None:
        return "--url is required to install (the bridge's base URL, e.g. http://127.0.0.1:29341)"
    if not args.url.strip():
        return '--url is empty (if you wrote --url "$CLAUDE_BRIDGE_URL", it is not set here)'
    if args.token is not None and not args.token.strip():
        return (
            f'--token is empty (if you wrote --token "${args.token_env}", it is not set here): '
            "give a hook token's name or secret from hooks.tokens, or leave --token out"
        )
    return None


def _git_ignored(path: Path) -> bool | None:
    try:
        r = subprocess.run(
            ["git", "-C", str(path.parent), "check-ignore", "-q", str(path)],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {0: True, 1: False}.get(r.returncode)  # 128: not a git repository


def _also_installed(path: Path, project: str | None) -> list[Path]:
    """Other settings files Claude Code merges with ``path`` that hold hooks of ours."""
    candidates = [user_settings_path()]
    if project is not None:
        candidates += [project_settings_path(Path(project), shared=s) for s in (True, False)]
    found = []
    for candidate in candidates:
        if candidate.resolve() == path.resolve():
            continue
        try:
            hooks = read_settings(candidate)[1].get("hooks")
        except InstallError:
            continue
        if isinstance(hooks, dict) and any(
            is_ours(h)
            for groups in hooks.values()
            if isinstance(groups, list)
            for g in groups
            if isinstance(g, dict) and isinstance(g.get("hooks"), list)
            for h in g["hooks"]
        ):
            found.append(candidate)
    return found


def run(args: argparse.Namespace) -> int:
    shared = bool(args.shared)
    if args.project is not None:
        path = project_settings_path(Path(args.project), shared=shared)
    else:
        if shared:
            print("--shared only applies to --project", file=sys.stderr)
            return 2
        path = user_settings_path()

    try:
        if args.uninstall:
            changed, diff = apply(path, {}, dry_run=args.dry_run)
            verb = "would remove" if args.dry_run else "removed"
            print(
                f"{verb} the bridge's hooks from {path}" if changed else f"not installed in {path}"
            )
        else:
            refused = _refuse_empty(args)
            if refused:
                print(f"install-hooks: {refused}; nothing changed", file=sys.stderr)
                return 2
            if args.claude_version == "auto":
                version = detect_claude_version()
                if version is None:
                    version = parse_version(CLAUDE_CODE_VERSION)
                    print(
                        f"claude not found on PATH: installing the events of Claude Code "
                        f"{CLAUDE_CODE_VERSION}, the version this bridge is tested with "
                        "(pass --claude-version X.Y.Z for the one you run)",
                        file=sys.stderr,
                    )
            else:
                version = parse_version(args.claude_version)
            desired = desired_hooks(
                url=args.url,
                token_env=args.token_env,
                durable=args.durable,
                hook_command=args.hook_command or default_hook_command(shared),
                claude_version=version,
                wake=not args.no_wake,
            )
            changed, diff = apply(path, desired, dry_run=args.dry_run)
            if read_settings(path)[1].get("disableAllHooks") is True:
                print(f"warning: {path} sets disableAllHooks: no hook runs", file=sys.stderr)
            verb = "would install" if args.dry_run else "installed"
            mode = "command shim (durable)" if args.durable else "http hooks + command shim"
            print(
                f"{verb} {len(desired)} hook events ({mode}) in {path}"
                if changed
                else f"already installed in {path}"
            )
            print(_token_hint(args.token, args.token_env, args.config))
            for other in _also_installed(path, args.project):
                print(
                    f"warning: the bridge's hooks are also in {other}: unless both files hold "
                    "identical entries, Claude Code sends every event twice",
                    file=sys.stderr,
                )
            if args.project is not None and not shared and _git_ignored(path) is False:
                print(f"note: {path} is not git-ignored; add it to .gitignore (personal settings)")
            if shared:
                print(
                    f"note: {path} is meant to be committed: it holds no secret, but every "
                    f"teammate needs {args.token_env} set and {HOOK_COMMAND} on PATH"
                )
    except (InstallError, ValueError, OSError) as e:
        print(f"install-hooks: {e}", file=sys.stderr)
        return 1
    if args.dry_run and diff:
        print(diff, end="")
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "install-hooks",
        help="add the bridge's hooks to Claude Code's settings.json",
        description="Merge (or with --uninstall remove) the bridge's hooks in a Claude Code "
        "settings file. Other settings and hooks are left as they are; running it again "
        "changes nothing.",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--user",
        action="store_true",
        help="~/.claude/settings.json ($CLAUDE_CONFIG_DIR/settings.json) — the default",
    )
    where.add_argument(
        "--project",
        metavar="DIR",
        help="DIR/.claude/settings.local.json (personal, git-ignored project settings)",
    )
    p.add_argument(
        "--shared",
        action="store_true",
        help="with --project: DIR/.claude/settings.json, the file a team commits",
    )
    p.add_argument("--url", help="the bridge's base URL, e.g. http://127.0.0.1:29341")
    p.add_argument(
        "--token",
        metavar="NAME_OR_SECRET",
        help="hook token name (from hooks.tokens) or the secret; only used to print the "
        "export line, never written to a settings file",
    )
    p.add_argument(
        "--token-env",
        default=DEFAULT_TOKEN_ENV,
        metavar="VAR",
        help="environment variable the hooks read the token from (default: %(default)s)",
    )
    p.add_argument(
        "--config", type=Path, help="bridge config, to resolve a token name to its secret"
    )
    p.add_argument(
        "--durable",
        action="store_true",
        help="use the spooling command shim for every event (no event lost while the bridge "
        "is down; costs a process start per event)",
    )
    p.add_argument(
        "--hook-command",
        help="how to run the shim (default: this Python running it directly, "
        f"'<python> -I -S -c <loader>'; with --shared: {HOOK_COMMAND}); must contain "
        f"{HOOK_COMMAND}, claude_bridge.shim or claude_bridge/shim.py",
    )
    p.add_argument(
        "--claude-version",
        default="auto",
        metavar="X.Y.Z",
        help="install only events this Claude Code version knows (default: ask `claude --version`)",
    )
    p.add_argument(
        "--no-wake",
        action="store_true",
        help="don't add the background waiter (an asyncRewake Stop hook running "
        f"'{HOOK_COMMAND} wait') that wakes an idle session when someone writes in Matrix",
    )
    p.add_argument("--uninstall", action="store_true", help="remove the bridge's hooks")
    p.add_argument(
        "--dry-run", action="store_true", help="show the change as a diff, write nothing"
    )
    p.set_defaults(func=run)
