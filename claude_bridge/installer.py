"""Merging the bridge's hooks into Claude Code's settings.json (the ``install-hooks`` command is
``cli/install_hooks.py``).

What gets installed (Claude Code hooks reference, https://code.claude.com/docs/en/hooks):

* one matcher group of our own per hook event the catalogue (``events/catalogue.py``) gives an
  ``Install`` for, appended after the user's groups, so their hooks keep running first and
  untouched;
* an ``http`` hook (``POST <url>/claude/v1/hooks`` with ``Authorization: Bearer
  $CLAUDE_BRIDGE_TOKEN`` interpolated from the environment through ``allowedEnvVars``) where
  Claude Code runs http hooks, and the command shim where it does not (``SessionStart`` and
  ``Setup`` "support command and mcp_tool hooks", not http);
* the command shim run by this Python straight from its files, ``python -I -S -c 'import sys;
  sys.path.append("<root>");from claude_bridge.shim import run;run()'`` (``fast_shim_argv``):
  Claude Code waits for it on every event, and this skips ``site``, ``.pth`` files and the
  environment and loads the module's cached bytecode (a script path would be compiled on every
  call, ~4 ms). A file committed for a team (``--shared``) names the console script
  ``claude-bridge-hook`` instead;
* with ``durable=True`` the command shim for every event: http hooks fail open on a connection
  error and the event is lost, the shim spools it and replays it in order.

Our entries are recognised by their target (an http hook whose URL path ends in
``/claude/v1/hooks``, a command running ``claude-bridge-hook``, ``claude_bridge.shim`` or
``claude_bridge/shim.py``: every form the shim was ever installed as), so
installing is a reconciliation — stale entries of ours (other URL, other mode) are replaced,
correct ones are left where they are — and uninstalling removes exactly those entries.

The secret never goes into a settings file: the hooks reference ``$CLAUDE_BRIDGE_TOKEN`` and the
CLI prints the ``export`` line to put in the environment Claude Code starts from.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from claude_bridge.events.catalogue import CATALOGUE, STOP, Install

HOOK_PATH = "/claude/v1/hooks"
DEFAULT_TOKEN_ENV = "CLAUDE_BRIDGE_TOKEN"
HOOK_COMMAND = "claude-bridge-hook"
COMMAND_MARKERS = ("claude-bridge-hook", "claude_bridge.shim", "claude_bridge/shim.py")
"""A command hook is ours when it contains one of these: the console script, the module (``-m``
or the ``-c`` loader of ``fast_shim_argv``) or the module's file run as a script."""

CLAUDE_CODE_VERSION = "2.1.332"
"""The Claude Code version the bridge is tested with: ``scripts/install-claude-code`` installs
exactly this one (it reads this line) for the end-to-end tests, and ``install-hooks`` assumes it
when ``claude`` is not on PATH. Events introduced later are only installed for a newer
``claude_version``: before Claude Code learnt to skip unknown hook event names with a warning,
one unknown name made it ignore the whole settings file ("Files with errors are skipped
entirely")."""

WAIT = 3600
"""The background waiter (``claude-bridge-hook wait``, an ``asyncRewake`` Stop hook): how long
after a turn ends a message from Matrix can still wake the idle session by itself."""

SHIM_MARGIN = 2
"""The shim's own --timeout is this much below the hook's timeout, so it can still spool the
event before Claude Code kills it."""


class InstallError(Exception):
    """The settings file can't be merged safely (not JSON, unexpected shape, bad URL)."""


# --- what we install ----------------------------------------------------------------------------


def parse_version(text: str) -> tuple[int, int, int]:
    """``"2.1.197 (Claude Code)"`` → ``(2, 1, 197)``."""
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    if not m:
        raise ValueError(f"not a Claude Code version: {text!r}")
    return int(m[1]), int(m[2]), int(m[3])


def claude_version(exe: str) -> tuple[int, int, int] | None:
    """What ``<exe> --version`` says, or None when it can't be run or read."""
    try:
        out = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
        return parse_version(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def normalize_url(url: str) -> str:
    """The bridge's base URL, without the hook path or a trailing slash."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InstallError(f"--url must be http(s)://host[:port][/prefix], got {url!r}")
    if parts.query or parts.fragment:
        raise InstallError(f"--url must not have a query or fragment: {url!r}")
    path = parts.path.rstrip("/")
    path = path.removesuffix(HOOK_PATH)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def events_for(claude_version: tuple[int, int, int] | None = None) -> list[tuple[str, Install]]:
    """The events to install for ``claude_version`` (their catalogue order), and how."""
    version = claude_version or parse_version(CLAUDE_CODE_VERSION)
    return [
        (kind.name, kind.install)
        for kind in CATALOGUE
        if kind.install is not None and kind.install.since <= version
    ]


def _command_handler(
    timeout: int, *, url: str, token_env: str, hook_command: str, subcommand: str = ""
) -> dict[str, Any]:
    parts = [hook_command, "--url", shlex.quote(url)]
    if token_env != DEFAULT_TOKEN_ENV:
        parts += ["--token-env", shlex.quote(token_env)]
    parts += ["--timeout", str(max(timeout - SHIM_MARGIN, 1))]
    return {
        "type": "command",
        "command": " ".join([*parts, subcommand]).strip(),
        "timeout": timeout,
    }


def _wait_handler(*, url: str, token_env: str, hook_command: str) -> dict[str, Any]:
    """Runs in the background after each turn and wakes the session when Matrix writes to it
    (exit 2). ``async`` as well, so a Claude Code that predates ``asyncRewake`` still never
    waits for it."""
    handler = _command_handler(
        WAIT, url=url, token_env=token_env, hook_command=hook_command, subcommand="wait"
    )
    return {**handler, "async": True, "asyncRewake": True}


def _http_handler(timeout: int, *, url: str, token_env: str) -> dict[str, Any]:
    return {
        "type": "http",
        "url": url + HOOK_PATH,
        "timeout": timeout,
        "headers": {"Authorization": f"Bearer ${token_env}"},
        "allowedEnvVars": [token_env],
    }


def desired_hooks(
    *,
    url: str,
    token_env: str = DEFAULT_TOKEN_ENV,
    durable: bool = False,
    hook_command: str = HOOK_COMMAND,
    claude_version: tuple[int, int, int] | None = None,
    wake: bool = True,
) -> dict[str, dict[str, Any]]:
    """Our matcher group for each event, in install order.

    ``wake``: the Stop group also runs the background waiter that wakes an idle session.
    """
    url = normalize_url(url)
    if not any(m in hook_command for m in COMMAND_MARKERS):
        # uninstall finds our command hooks by these names
        raise InstallError(
            f"--hook-command must run {HOOK_COMMAND}, claude_bridge.shim or claude_bridge/shim.py"
        )
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", token_env):
        raise InstallError(f"not an environment variable name: {token_env!r}")
    groups: dict[str, dict[str, Any]] = {}
    for name, spec in events_for(claude_version):
        if durable or not spec.http:
            handler = _command_handler(
                spec.timeout, url=url, token_env=token_env, hook_command=hook_command
            )
        else:
            handler = _http_handler(spec.timeout, url=url, token_env=token_env)
        group: dict[str, Any] = {"matcher": "*"} if spec.matcher else {}
        group["hooks"] = [handler]
        if wake and name == STOP.name:
            group["hooks"].append(
                _wait_handler(url=url, token_env=token_env, hook_command=hook_command)
            )
        groups[name] = group
    return groups


def is_ours(handler: Any) -> bool:
    if not isinstance(handler, dict):
        return False
    if handler.get("type") == "http":
        url = handler.get("url")
        if not isinstance(url, str):
            return False
        return urllib.parse.urlsplit(url).path.rstrip("/").endswith(HOOK_PATH)
    if handler.get("type") == "command":
        command = handler.get("command")
        return isinstance(command, str) and any(m in command for m in COMMAND_MARKERS)
    return False


# --- merging ------------------------------------------------------------------------------------


def reconcile(settings: dict[str, Any], desired: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Return a copy of ``settings`` whose bridge hooks are exactly ``desired``.

    Everything that isn't ours is kept, in place and in order. An entry of ours that is already
    exactly right stays where it is (so a second install changes nothing); any other entry of
    ours is removed, and containers that only became empty through that removal go too.
    """
    new = copy.deepcopy(settings)
    hooks = new.get("hooks")
    if hooks is None:
        hooks = {}
    elif not isinstance(hooks, dict):
        raise InstallError('"hooks" in the settings file is not an object')

    satisfied: set[str] = set()
    for event in list(hooks):
        groups = hooks[event]
        if not isinstance(groups, list):
            continue  # not a shape we know: not ours to touch
        kept = []
        for group in groups:
            handlers = group.get("hooks") if isinstance(group, dict) else None
            if not isinstance(handlers, list) or not any(is_ours(h) for h in handlers):
                kept.append(group)
                continue
            if group == desired.get(event) and event not in satisfied:
                satisfied.add(event)
                kept.append(group)
                continue
            others = [h for h in handlers if not is_ours(h)]
            if others:  # a user's group that also held one of ours: keep theirs
                kept.append({**group, "hooks": others})
        if kept or not groups:
            hooks[event] = kept
        else:
            del hooks[event]

    for event, group in desired.items():
        if event not in satisfied:
            hooks.setdefault(event, []).append(copy.deepcopy(group))

    if hooks:
        new["hooks"] = hooks
    elif "hooks" in new and settings.get("hooks"):
        del new["hooks"]  # emptied by removing ours
    return new


# --- the settings file --------------------------------------------------------------------------


def user_settings_path() -> Path:
    """``~/.claude/settings.json``, or under ``$CLAUDE_CONFIG_DIR`` (documented in env-vars)."""
    base = os.environ.get("CLAUDE_CONFIG_DIR")
    return (Path(base).expanduser() if base else Path.home() / ".claude") / "settings.json"


def project_settings_path(project: Path, *, shared: bool = False) -> Path:
    return project / ".claude" / ("settings.json" if shared else "settings.local.json")


def read_settings(path: Path) -> tuple[bytes | None, dict[str, Any]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, {}
    if not raw.strip():
        return raw, {}
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise InstallError(f"{path} is not valid JSON ({e}); fix it first, nothing changed") from e
    if not isinstance(data, dict):
        raise InstallError(f"{path} does not hold a JSON object; nothing changed")
    return raw, data


def render(settings: dict[str, Any], previous: bytes | None = None) -> bytes:
    """JSON in the file's own indentation (two spaces, as Claude Code writes, by default)."""
    indent: int | str = 2
    m = re.search(rb"\n([ \t]+)\S", previous or b"")
    if m:
        indent = "\t" if m[1].startswith(b"\t") else len(m[1])
    return (json.dumps(settings, indent=indent, ensure_ascii=False) + "\n").encode()


def write_settings(path: Path, data: bytes, previous: bytes | None) -> None:
    """Atomically replace ``path``; the previous content goes to ``<name>.bak``."""
    # Dotfile managers often symlink settings.json: replace the file, not the link.
    path = path.resolve() if path.is_symlink() else path
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o644
    if previous is not None:
        mode = path.stat().st_mode & 0o777
        backup = path.with_name(path.name + ".bak")
        backup.write_bytes(previous)
        os.chmod(backup, mode)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def apply(path: Path, desired: dict[str, dict[str, Any]], *, dry_run: bool) -> tuple[bool, str]:
    """Make our hooks in ``path`` exactly ``desired``: whether it changed (or would), and the
    change as a unified diff."""
    previous, settings = read_settings(path)
    new = reconcile(settings, desired)
    if new == settings:
        return False, ""
    old_text = (previous or b"").decode("utf-8", "replace")
    new_bytes = render(new, previous)
    diff = "".join(
        difflib.unified_diff(
            old_text.splitlines(keepends=True),
            new_bytes.decode().splitlines(keepends=True),
            fromfile=str(path),
            tofile=str(path),
        )
    )
    if not dry_run:
        write_settings(path, new_bytes, previous)
    return True, diff


def install(
    settings_path: Path,
    *,
    url: str,
    token_env: str = DEFAULT_TOKEN_ENV,
    durable: bool = False,
    hook_command: str = HOOK_COMMAND,
    claude_version: tuple[int, int, int] | None = None,
    dry_run: bool = False,
    wake: bool = True,
) -> bool:
    """Merge the bridge's hooks into ``settings_path``. True when the file changed (or would)."""
    desired = desired_hooks(
        url=url,
        token_env=token_env,
        durable=durable,
        hook_command=hook_command,
        claude_version=claude_version,
        wake=wake,
    )
    return apply(settings_path, desired, dry_run=dry_run)[0]


def uninstall(settings_path: Path, *, dry_run: bool = False) -> bool:
    """Remove every hook entry of ours. True when the file changed (or would)."""
    return apply(settings_path, {}, dry_run=dry_run)[0]


# --- running the shim -----------------------------------------------------------------------------


def fast_shim_argv() -> list[str]:
    """This Python (absolute: Claude Code runs hooks with the PATH it was started with, which may
    not include our virtualenv) running the shim with nothing but the standard library.

    ``-I``: no ``PYTHON*`` environment, user site or current directory on ``sys.path`` (the
    project Claude Code runs in can't shadow a module); ``-S``: no ``site``, so no ``.pth`` files
    (the shim needs nothing from site-packages). The ``-c`` loader appends the directory holding
    ``claude_bridge`` to ``sys.path`` (after the standard library, which it can't shadow either)
    and imports the shim from its cached bytecode, then ``run()`` skips the interpreter's
    finalisation. About 1.2 × curl per event, ~1 ms over a bare ``python -I -S -c pass``, where
    the console script costs ~1.7 × and ``python -I -S …/claude_bridge/shim.py`` ~1.8 × (a script
    is compiled on every run, ~4 ms): ``bench/shim_vs_curl.py``.
    """
    from claude_bridge import shim  # standard library only: cheap

    root = str(Path(shim.__file__).absolute().parent.parent)
    # json.dumps: a double-quoted Python string literal (its escapes are Python's too)
    loader = (
        f"import sys;sys.path.append({json.dumps(root)});from claude_bridge.shim import run;run()"
    )
    return [sys.executable, "-I", "-S", "-c", loader]


def default_hook_command(shared: bool) -> str:
    """The shim as Claude Code's shell should run it.

    A file committed for a team can only name the command (each machine has its own install);
    a personal file gets ``fast_shim_argv`` (or, from a Python that doesn't know its own path,
    the console script by its absolute path when it is on PATH).
    """
    if shared:
        return HOOK_COMMAND
    if sys.executable:
        return shlex.join(fast_shim_argv())
    found = shutil.which(HOOK_COMMAND)
    return shlex.quote(found) if found else HOOK_COMMAND
