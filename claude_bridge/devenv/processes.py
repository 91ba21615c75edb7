"""Loopback ports and child processes: who holds a port, a free one, processes of ours left
running, and children that die with their parent.

Finding a port's holder reads Linux's ``/proc`` (the listening socket's inode, then the process
with a descriptor on it); elsewhere, or for another user's process, the holder stays unnamed
and only "in use" is known.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp
_STOP_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class Holder:
    """A process, as a person would recognise it."""

    pid: int
    command: str

    def __str__(self) -> str:
        command = self.command if len(self.command) <= 160 else self.command[:157] + "…"
        return f"pid {self.pid} ({command})"


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``host:port`` now. SO_REUSEADDR as servers set it, so a
    port whose last connections linger in TIME_WAIT counts as free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port() -> int:
    """A free loopback port (for Synapse, the bridge's listeners, or nothing at all)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def next_free_port(start: int, skip: set[int] | frozenset[int] = frozenset()) -> int:
    """``start`` or the first free port above it, leaving out ``skip`` (chosen, not yet bound)."""
    for port in range(start, min(start + 200, 65536)):
        if port not in skip and port_is_free(port):
            return port
    raise OSError(f"no free port in {start}–{start + 199}")


def command_of(pid: int) -> str | None:
    """The command line of a live process, or None (gone, a zombie, or not ours to read)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace") or None


def processes_running(*needles: str) -> list[Holder]:
    """Live processes whose command line contains every one of ``needles``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            command = command_of(int(entry.name))
            if command and all(needle in command for needle in needles):
                found.append(Holder(int(entry.name), command))
    return found


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == _LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def port_holder(port: int) -> Holder | None:
    """The process listening on ``port`` (any local address), when it can be seen."""
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not wanted:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in wanted:
                        pid = int(entry.name)
                        return Holder(pid, command_of(pid) or "?")
    return None


def describe_port(port: int) -> str:
    """``port 8008 is in use by pid 4242 (python -m synapse.app.homeserver …)``."""
    holder = port_holder(port)
    by = f"by {holder}" if holder else "by a process this user cannot see"
    return f"port {port} is in use {by}"


def stop_process(pid: int, grace: float = _STOP_GRACE_SECONDS) -> None:
    """SIGTERM, then SIGKILL if it is still there after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while command_of(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if command_of(pid) is not None:
            os.kill(pid, signal.SIGKILL)
            while command_of(pid) is not None and time.monotonic() < deadline + grace:
                time.sleep(0.05)


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGKILL the child (Synapse, a bridge) when its parent goes away.

    Covers a test runner killed outright, where atexit never runs. The signal fires
    when the *thread* that spawned Synapse exits, so start it from a long-lived thread
    (the event loop's). libc is resolved here, in the parent: importing in the forked
    child could deadlock on a lock held by another thread at fork time.
    """
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return hook
