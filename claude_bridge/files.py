"""Files that hold secrets or raw hook payloads: created 0600 in 0700 directories.

The bridge never loosens or tightens what already exists (a deployment may share a directory on
purpose); it creates private, and ``doctor`` warns about what others can read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def private_dir(path: Path) -> Path:
    """``path`` as a directory; each directory created on the way is 0700."""
    missing: list[Path] = []
    for parent in (path, *path.parents):
        if parent.exists():
            break
        missing.append(parent)
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # made meanwhile by someone else: theirs to keep
            continue
        os.chmod(directory, PRIVATE_DIR)  # mkdir's mode is filtered through the umask
    return path


def create_private(path: Path) -> None:
    """Create ``path`` empty and 0600 (its directory 0700) unless it exists."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return
    os.close(fd)
    os.chmod(path, PRIVATE_FILE)


def write_private_text(path: Path, text: str) -> None:
    """Write ``text`` to a new or existing file, which ends up 0600 (its directory 0700)."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, PRIVATE_FILE)


def open_to_others(path: Path) -> str | None:
    """What is wrong with ``path``'s mode for a file holding secrets, or None when it is fine
    (or absent): readable or writable by group or others, or in a directory others may write."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None
    if mode & 0o077:
        return f"{path} is {mode:04o}: readable by others (chmod 600 {path})"
    parent = path.resolve().parent
    parent_mode = stat.S_IMODE(parent.stat().st_mode)
    if parent_mode & 0o022 and not parent_mode & stat.S_ISVTX:
        return f"{parent} is {parent_mode:04o}: others may replace {path.name} (chmod 700 {parent})"
    return None
