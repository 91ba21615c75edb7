"""The quickstart's folder: one quickstart at a time in it, what a killed one left running, and
the login file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from ruamel.yaml import YAML, YAMLError

from claude_bridge.config import Config, write_private
from claude_bridge.devenv.processes import command_of, processes_running, stop_process
from claude_bridge.store.lock import FileLock, leader_lock


class QuickstartError(Exception):
    """Nothing (more) is started; the message says what is in the way and what to do."""


def hold_folder(data: Path) -> int:
    """Take ``quickstart.lock`` for the life of this process: one quickstart per folder. The
    kernel drops it when the process dies, however it dies."""
    path = data / "quickstart.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise QuickstartError(
            f"a quickstart is already running with {data} (pid {pid}): use that one, or stop it "
            f"(Ctrl-C in its terminal, or kill {pid}). A second, separate bridge needs another "
            "--data folder."
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _lock_holder_pid(path: Path) -> int | None:
    """The pid in a flock()ed file (``pid N on host``), if someone holds the lock."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None  # free
    except BlockingIOError:
        words = os.pread(fd, 200, 0).decode(errors="replace").split()
        return int(words[1]) if len(words) > 1 and words[1].isdigit() else None
    finally:
        os.close(fd)


def clear_leftovers(data: Path, config: Config) -> list[str]:
    """Stop a bridge and a Synapse of this folder that outlived their quickstart (killed where
    no parent-death signal exists, or started by hand). Called with the folder held, so no live
    quickstart owns them."""
    notes = []
    lock = leader_lock(config.database_url(data))
    bridge = _lock_holder_pid(Path(lock.path)) if isinstance(lock, FileLock) else None
    if bridge is not None and command_of(bridge):
        stop_process(bridge)
        notes.append(f"stopped a bridge still running on {data} (pid {bridge})")
    # Synapse writes no pid file unless it daemonizes: known by its command line
    config_file = f"-c {data / 'synapse' / 'homeserver.yaml'}"
    for synapse in processes_running("synapse.app.homeserver", config_file):
        stop_process(synapse.pid)
        notes.append(f"stopped a Synapse still running on {data} (pid {synapse.pid})")
    return notes


LOGIN_FILE = "login.yaml"
_LEGACY_LOGIN_FILE = "login.txt"  # before 0.1: "user: @admin:localhost", not readable as YAML


def saved_login(data: Path) -> dict[str, str]:
    path = data / LOGIN_FILE
    try:
        loaded = YAML(typ="safe").load(path.read_text())
    except FileNotFoundError:
        loaded = None
    except YAMLError as e:
        raise QuickstartError(f"{path} is not readable ({e}); fix or remove it") from None
    if isinstance(loaded, dict):
        return {str(k): str(v) for k, v in loaded.items()}
    with contextlib.suppress(FileNotFoundError):
        lines = (data / _LEGACY_LOGIN_FILE).read_text().splitlines()
        return dict(line.split(": ", 1) for line in lines if ": " in line)
    return {}


def write_login(data: Path, user_id: str, password: str, homeserver: str) -> Path:
    path = data / LOGIN_FILE
    login = {"homeserver": homeserver, "user": user_id, "password": password}
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    write_private(path, lambda f: yaml.dump(login, f))
    (data / _LEGACY_LOGIN_FILE).unlink(missing_ok=True)
    return path
