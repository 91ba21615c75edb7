"""The runner's configuration: flags, or a small YAML file (``--config``) that flags override.

```yaml
url: http://bridge.example.org:29341   # default: $CLAUDE_BRIDGE_URL
token: <hook token secret>             # default: $CLAUDE_BRIDGE_TOKEN (prefer the environment)
host: laptop                           # default: the short hostname
projects:                              # the only places sessions start in
  api: ~/src/api
  web: /srv/web
claude: /usr/local/bin/claude          # default: $CLAUDE_CODE_BIN, else `claude` on PATH
args: ["--model", "opus"]              # added to every session; chosen here, never from Matrix
max_sessions: 4
accept_from: ["@alice:example.org"]    # default: whoever the bridge lets start sessions
trust_projects: false                  # true: mark the projects trusted in ~/.claude.json
files_root: ~/.cache/claude-bridge/attachments  # operators' files go here; "" carries none
```
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML, YAMLError

from claude_bridge.installer import InstallError, normalize_url

PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
USER_ID = re.compile(r"@[^:\s]+:\S+")
KEYS = {
    "url",
    "token",
    "host",
    "projects",
    "claude",
    "args",
    "max_sessions",
    "accept_from",
    "state_dir",
    "tmux",
    "tmux_socket",
    "wait",
    "end_timeout",
    "trust_projects",
    "hooks",
    "durable",
    "files_root",
}


class RunnerConfigError(Exception):
    """The configuration can't be used; the message says what to change."""


@dataclass
class RunnerConfig:
    url: str
    token: str
    host: str
    projects: dict[str, Path]
    claude: str
    args: list[str] = field(default_factory=list)
    max_sessions: int = 4
    accept_from: list[str] | None = None
    state_dir: Path = Path()
    tmux: str = "tmux"
    tmux_socket: str | None = None
    wait: int = 25
    end_timeout: float = 10.0
    trust_projects: bool = False
    hooks: bool = True
    durable: bool = False
    files_root: str | None = None
    """Where operators' files are written (``runner/files.py``); None: none are carried."""


def sanitise_host(name: str) -> str:
    """``Alice's MacBook.local`` → ``alice-s-macbook``: lower case, [a-z0-9-], at most 63."""
    short = name.split(".")[0].lower()
    cleaned = re.sub(r"[^a-z0-9-]+", "-", short).strip("-")[:63].strip("-")
    return cleaned or "host"


def check_project_name(name: str) -> str | None:
    """Why ``name`` can't be a project name (None: it can). The same reasons the bridge gives."""
    if not name:
        return "the project name is empty"
    if name.startswith("/") or os.path.isabs(name):
        return f"{name!r} is an absolute path; name a configured project instead"
    if ".." in name or "/" in name or "\\" in name:
        return f"{name!r} is a path, not a project name"
    if not PROJECT_NAME.fullmatch(name):
        return f"{name!r} is not a project name (letters, digits, '-' and '_', at most 64)"
    return None


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_text()
    except OSError as e:
        raise RunnerConfigError(f"can't read {path}: {e}") from e
    try:
        data = YAML(typ="safe").load(raw)
    except YAMLError as e:
        raise RunnerConfigError(f"{path} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RunnerConfigError(f"{path} must hold a mapping of settings")
    unknown = sorted(set(map(str, data)) - KEYS)
    if unknown:
        raise RunnerConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}")
    if "token" in data and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise RunnerConfigError(
            f"{path} holds the hook token but others can read it: chmod 600 {path}"
        )
    return data


def _projects(raw: Any, flags: list[str]) -> dict[str, Path]:
    pairs: list[tuple[str, Any]] = []
    if raw is not None:
        if not isinstance(raw, dict):
            raise RunnerConfigError("projects must be a mapping NAME: DIR")
        pairs += [(str(k), v) for k, v in raw.items()]
    for flag in flags:
        name, sep, directory = flag.partition("=")
        if not sep or not directory:
            raise RunnerConfigError(f"--project {flag!r}: write NAME=DIR")
        pairs.append((name, directory))
    projects: dict[str, Path] = {}
    for name, directory in pairs:
        reason = check_project_name(name)
        if reason:
            raise RunnerConfigError(f"project {name!r}: {reason}")
        if not isinstance(directory, str) or not directory:
            raise RunnerConfigError(f"project {name!r}: its directory must be a path")
        path = Path(directory).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        path = path.resolve()
        if not path.is_dir():
            raise RunnerConfigError(f"project {name!r}: {path} is not a directory")
        projects[name] = path
    if not projects:
        raise RunnerConfigError("no projects: give at least one --project NAME=DIR")
    return projects


def _str_list(raw: Any, what: str) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise RunnerConfigError(f"{what} must be a list of strings")
    return list(raw)


def _positive(raw: Any, what: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw <= 0:
        raise RunnerConfigError(f"{what} must be a positive number, got {raw!r}")
    return raw


def resolve_claude(explicit: str | None, env: dict[str, str]) -> str:
    candidate = explicit or env.get("CLAUDE_CODE_BIN") or "claude"
    found = shutil.which(candidate, path=env.get("PATH"))
    if found is None:
        raise RunnerConfigError(
            f"Claude Code not found: {candidate!r} (give --claude PATH, set CLAUDE_CODE_BIN, or "
            "put `claude` on PATH)"
        )
    return str(Path(found).absolute())


def _files_root(raw: Any) -> str | None:
    """The configured root, absolute (default: the shim's and the waiter's); None for ``""``."""
    if raw is None:
        from claude_bridge.shim import default_files_root

        return default_files_root()
    if not isinstance(raw, str):
        raise RunnerConfigError('files_root must be a path (or "" to carry no files)')
    if not raw:
        return None
    root = os.path.abspath(os.path.expanduser(raw))
    if not root.isascii() or not root.isprintable():
        raise RunnerConfigError(f"files_root {root!r}: only printable ASCII can go in the header")
    return root


def default_state_dir(host: str, env: dict[str, str]) -> Path:
    home = env.get("HOME") or str(Path.home())
    base = env.get("XDG_STATE_HOME") or str(Path(home) / ".local" / "state")
    return Path(base) / "claude-bridge" / f"runner-{host}"


def build_config(
    flags: dict[str, Any], env: dict[str, str] | None = None, config_file: Path | None = None
) -> RunnerConfig:
    """Flags (None: not given) over the YAML file over the environment and the defaults."""
    env = dict(os.environ) if env is None else env
    data = _load_yaml(config_file) if config_file is not None else {}

    def pick(key: str, default: Any = None) -> Any:
        value = flags.get(key)
        return value if value is not None else data.get(key, default)

    url = pick("url") or env.get("CLAUDE_BRIDGE_URL")
    if not url:
        raise RunnerConfigError("no bridge URL: give --url or set CLAUDE_BRIDGE_URL")
    try:
        url = normalize_url(str(url))
    except InstallError as e:
        raise RunnerConfigError(str(e)) from e
    token = pick("token") or env.get("CLAUDE_BRIDGE_TOKEN")
    if not token or not str(token).strip():
        raise RunnerConfigError("no hook token: give --token or set CLAUDE_BRIDGE_TOKEN")
    host = sanitise_host(str(pick("host") or socket.gethostname()))
    accept = pick("accept_from")
    if accept is not None:
        accept = _str_list(accept, "accept_from")
        bad = [u for u in accept if not USER_ID.fullmatch(u)]
        if bad:
            raise RunnerConfigError(f"accept_from: not Matrix user ids: {', '.join(bad)}")
    args = _str_list(pick("args", []), "args")
    max_sessions = int(_positive(pick("max_sessions", 4), "max_sessions"))
    wait = int(_positive(pick("wait", 25), "wait"))
    if wait > 55:
        raise RunnerConfigError("wait must be at most 55 seconds")
    state_dir = pick("state_dir")
    return RunnerConfig(
        url=url,
        token=str(token).strip(),
        host=host,
        projects=_projects(data.get("projects"), flags.get("project") or []),
        claude=resolve_claude(pick("claude"), env),
        args=args,
        max_sessions=max_sessions,
        accept_from=accept,
        state_dir=Path(state_dir).expanduser() if state_dir else default_state_dir(host, env),
        tmux=str(pick("tmux", "tmux")),
        tmux_socket=pick("tmux_socket"),
        wait=wait,
        end_timeout=_positive(pick("end_timeout", 10.0), "end_timeout"),
        trust_projects=bool(pick("trust_projects", False)),
        hooks=bool(pick("hooks", True)),
        durable=bool(pick("durable", False)),
        files_root=_files_root(pick("files_root")),
    )
