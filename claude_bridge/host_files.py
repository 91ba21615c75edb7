"""Files from Matrix on the Claude Code host: where they go, and writing them there safely.

An operator's attachment reaches Claude as a local path, so its bytes must be on the machine
Claude Code runs on. Whoever writes them — the command shim (``--durable``), the background
waiter, the runner, or the bridge itself for a ``local`` token — uses this module, so the path the
bridge names in Claude's message and the path the host writes are computed by one function:

    <root>/<session>/<message id>-<name>

``root`` is ``~/.cache/claude-bridge/attachments`` of the host's user (``shim.default_files_root``,
``$XDG_CACHE_HOME`` respected; for a ``local`` token ``bridge.attachments.local_directory``). The
command paths send it to the bridge in the ``X-Claude-Bridge-Files`` header, which is how the
bridge knows they can carry files. ``session`` and ``name`` are sanitised to ``[A-Za-z0-9._-]`` with no leading dot,
so no name can climb out of its folder or hide. Folders are 0700, files 0600, written to a
temporary name and renamed into place; a symlinked session folder is refused.

The other way (``!claude file <path>``, ``fulfil``): an answer may ask, under
``"claudeBridgeFileRequests"``, for files of the session's project directory. ``read_confined``
reads one without ever leaving that directory: each component is opened relative to the one
before with ``O_NOFOLLOW``, so a ``..`` or a symlink anywhere on the way is refused, and only a
regular file up to the size cap is read. The bytes (or the reason for refusing) are POSTed back.

Host side, in one call (``receive``): a hook answer (or the waiter's) lists the files under
``"claudeBridgeFiles"``; for each, check its path is the one ``host_path`` gives, fetch the bytes
with the hook token (``GET /claude/v1/sessions/<session>/attachments/<id>``) and write them.
``settle_answer`` does both directions for one answer of a command path, given the shim's HTTP
client; the runner, which carries files only in its jobs, calls ``receive`` itself. Session
folders left untouched for ``$CLAUDE_BRIDGE_FILES_KEEP_DAYS`` days go (``prune``: the runner
hourly, the bridge for a ``local`` token's folder; the waiter at most daily, ``prune_daily``).

Standard library only, imported lazily: the shim's start-up must not pay for it. Only what
every hook call needs stays in the shim: the root (``shim.default_files_root``) and the header
announcing it.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

FILES_HEADER = "X-Claude-Bridge-Files"
"""Sent by a command path with its attachments root: it can fetch and write files itself."""
ANSWER_KEY = "claudeBridgeFiles"
"""The key of a hook answer (and the waiter's) listing files to fetch; the shim removes it."""
FILE_PATH = "/claude/v1/sessions/{session}/attachments/{id}"
REQUESTS_KEY = "claudeBridgeFileRequests"
"""The key of an answer asking this host for files of the project (``!claude file <path>``)."""
REQUEST_PATH = "/claude/v1/sessions/{session}/file-requests/{id}"
ERROR_HEADER = "X-Claude-Bridge-File-Error"
"""Sent, with an empty body, instead of a requested file this host refuses to read."""
NAME_CHARS = 120
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class FileRefused(Exception):
    """A file entry this host will not write (its path is not where it belongs, or the fetch
    or the write failed); the message says why."""


def safe_component(name: str, fallback: str = "file") -> str:
    """One path component: unsafe characters become ``_``, no leading dot, at most
    ``NAME_CHARS`` characters (the extension kept)."""
    cleaned = "".join(c if c in _SAFE else "_" for c in name).lstrip(".")
    if len(cleaned) > NAME_CHARS:
        stem, dot, ext = cleaned.rpartition(".")
        ext = ext[:16] if dot and stem else ""
        cleaned = cleaned[: NAME_CHARS - len(ext) - 1].rstrip(".") + ("." + ext if ext else "")
    return cleaned or fallback


def _safe_name(name: str) -> bool:
    """A name ``safe_component`` could have made, or two joined by ``-`` (``<id>-<name>``): only
    safe characters, no leading dot, within what a file system takes (255 bytes)."""
    return bool(name) and not name.startswith(".") and set(name) <= _SAFE and len(name) <= 255


def host_path(root: str, session_id: str, message_id: int, name: str) -> str:
    """Where message ``message_id``'s file ``name`` goes under ``root`` (an absolute path)."""
    folder = safe_component(session_id, "session")
    return os.path.join(root, folder, f"{int(message_id)}-{safe_component(name)}")


def _private_dirs(path: str) -> None:
    """``path`` and its missing parents as directories, each created 0700."""
    missing = []
    current = path
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue
        os.chmod(directory, 0o700)


def write_file(root: str, path: str, data: bytes) -> None:
    """Write ``data`` at ``path`` (under ``root``, in a session folder of it), 0600 in 0700.

    Raises ``FileRefused`` for a path outside ``root`` or a session folder that is a symlink."""
    root = os.path.abspath(root)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.dirname(folder) != root or not _safe_name(os.path.basename(path)):
        raise FileRefused(f"{path!r} is not a file of a session folder under {root!r}")
    _private_dirs(folder)
    if os.path.islink(folder) or os.path.realpath(folder) != os.path.join(
        os.path.realpath(root), os.path.basename(folder)
    ):
        raise FileRefused(f"{folder!r} is a link: refused")
    os.chmod(folder, 0o700)
    tmp = os.path.join(folder, f".{os.getpid()}-{time.monotonic_ns()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


KEEP_DAYS_ENV = "CLAUDE_BRIDGE_FILES_KEEP_DAYS"
"""Days a host keeps a session folder untouched before deleting it (default ``KEEP_DAYS``)."""
KEEP_DAYS = 7
STAMP = ".pruned"
"""A file in the root whose mtime says when this host last pruned (``prune_daily``)."""


def keep_seconds(environ: Mapping[str, str] | None = None) -> float:
    """``$CLAUDE_BRIDGE_FILES_KEEP_DAYS`` (a whole number of days, 0 or more; anything else:
    ``KEEP_DAYS``, like ``bridge.attachments.keep_days``) in seconds."""
    raw = (os.environ if environ is None else environ).get(KEEP_DAYS_ENV, "").strip()
    days = int(raw) if raw.isdigit() else KEEP_DAYS
    return days * 86_400.0


def prune(root: str, keep_seconds: float, now: float | None = None) -> int:
    """Delete session folders under ``root`` untouched for ``keep_seconds``; how many went.

    Never follows a link: each folder is opened relative to ``root`` with ``O_NOFOLLOW``
    (a symlinked folder is left alone), and inside it only files and links themselves are
    unlinked; a folder holding a directory (nothing this module writes) is left as it is."""
    import stat

    now = time.time() if now is None else now
    gone = 0
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return 0
    try:
        for name in os.listdir(root_fd):
            try:
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=root_fd)
            except OSError:
                continue  # a file, a link, gone meanwhile
            try:
                if now - os.fstat(fd).st_mtime < keep_seconds:
                    continue
                entries = os.listdir(fd)
                if any(
                    stat.S_ISDIR(os.stat(e, dir_fd=fd, follow_symlinks=False).st_mode)
                    for e in entries
                ):
                    continue
                for entry in entries:
                    os.unlink(entry, dir_fd=fd)
                os.rmdir(name, dir_fd=root_fd)
                gone += 1
            except OSError:
                continue
            finally:
                os.close(fd)
    finally:
        os.close(root_fd)
    return gone


def prune_daily(
    root: str, keep_seconds: float, every: float = 86_400.0, now: float | None = None
) -> int | None:
    """``prune`` at most once per ``every`` seconds for this root (the stamp file's mtime); None
    when it was not due (or there is no root yet). For the background waiter, which starts at
    every turn's end."""
    now = time.time() if now is None else now
    stamp = os.path.join(root, STAMP)
    try:
        if now - os.stat(stamp, follow_symlinks=False).st_mtime < every:
            return None
    except FileNotFoundError:
        pass
    except OSError:
        return None
    try:
        fd = os.open(stamp, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        os.utime(stamp, (now, now), follow_symlinks=False)
    except OSError:
        return None  # no root yet (nothing to prune) or not writable
    return prune(root, keep_seconds, now)


def receive(
    fetch: Callable[[str], bytes],
    root: str,
    session_id: str,
    entries: Iterable[object],
) -> list[str]:
    """Fetch and write every file an answer lists; the problems, one line each (empty: all
    written). ``fetch(path)`` GETs a bridge path with the hook token and returns the body, or
    raises (any exception: that file is reported, the others still go)."""
    problems = []
    for entry in entries:
        try:
            if not isinstance(entry, dict):
                raise FileRefused("not a file entry")
            message_id, name, path = entry.get("id"), entry.get("name"), entry.get("path")
            if not isinstance(message_id, int) or not isinstance(name, str):
                raise FileRefused("a file entry without id and name")
            expected = host_path(root, session_id, message_id, name)
            if path != expected:
                raise FileRefused(f"the bridge named {path!r}, this host would write {expected!r}")
            from urllib.parse import quote

            data = fetch(FILE_PATH.format(session=quote(session_id, safe=""), id=message_id))
            write_file(root, expected, data)
        except Exception as e:
            where = entry.get("path") if isinstance(entry, dict) else None
            problems.append(f"the file {where!r} could not be written: {e}")
    return problems


def amend_answer(answer: dict[str, object], problems: list[str]) -> None:
    """Tell Claude, in the answer's own text, which files are missing (the bridge's line)."""
    if not problems:
        return
    note = "\n\n" + "\n".join(f"[claude-bridge: {p}]" for p in problems)
    output = answer.get("hookSpecificOutput")
    if isinstance(output, dict) and isinstance(output.get("additionalContext"), str):
        output["additionalContext"] += note
    elif isinstance(answer.get("reason"), str):
        answer["reason"] = str(answer["reason"]) + note
    elif isinstance(answer.get("text"), str):
        answer["text"] = str(answer["text"]) + note


def read_confined(root: str, relative: str, max_bytes: int) -> bytes:
    """The bytes of ``root/relative``, a regular file of at most ``max_bytes``; ``FileRefused``
    for ``..``, an absolute path, a symlink on the way (the file itself included), anything
    but a regular file, or a larger one."""
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if relative.startswith("/") or not parts or ".." in parts or "\0" in relative:
        raise FileRefused(f"{relative!r}: only a path inside the project directory, without ..")
    # A session started in a home directory (or above one) has no project to confine to: its
    # "project" would be every file of the user (~/.ssh, ~/.pgpass, binary key stores).
    real, home = os.path.realpath(root), os.path.realpath(os.path.expanduser("~"))
    if real == os.sep or real == home or home.startswith(real.rstrip(os.sep) + os.sep):
        raise FileRefused(
            f"the session started in {root!r}, a home directory or above one: files are read "
            "only from a project directory"
        )
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            try:
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as e:
                raise FileRefused(f"{relative!r}: {part!r} is not a directory (or a link)") from e
            os.close(fd)
            fd = inner
        try:
            file_fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        except OSError as e:
            raise FileRefused(f"{relative!r}: no such file here, or a link ({e.strerror})") from e
    finally:
        os.close(fd)
    import stat

    info = os.fstat(file_fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
        os.close(file_fd)
        what = "is not a regular file" if not stat.S_ISREG(info.st_mode) else "is larger than"
        raise FileRefused(
            f"{relative!r} {what}" + (f" {max_bytes} bytes" if what.endswith("than") else "")
        )
    with os.fdopen(file_fd, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileRefused(f"{relative!r} is larger than {max_bytes} bytes")
    return data


def fulfil(
    send: Callable[[str, bytes, str | None], object],
    session_id: str,
    requests: Iterable[object],
) -> list[str]:
    """Read each requested file and ``send(path, body, error)`` it back to the bridge (``error``
    set, body empty, when refused); what went wrong, one line each."""
    from urllib.parse import quote

    problems = []
    for request in requests:
        if not isinstance(request, dict):
            continue
        request_id, root, relative = request.get("id"), request.get("root"), request.get("path")
        max_bytes = request.get("max_bytes")
        if not isinstance(request_id, str) or not request_id.isalnum():
            continue
        where = REQUEST_PATH.format(session=quote(session_id, safe=""), id=request_id)
        data, error = b"", None
        try:
            if not isinstance(root, str) or not isinstance(relative, str):
                raise FileRefused("a file request without root and path")
            data = read_confined(root, relative, max_bytes if isinstance(max_bytes, int) else 0)
        except (FileRefused, OSError) as e:
            error = str(e)
        try:
            send(where, data, error)
        except Exception as e:
            problems.append(f"could not send {relative!r} to the bridge: {e}")
    return problems


def settle_answer(
    answer: bytes,
    session_id: object,
    root: str,
    call: Callable[[str, str, bytes | None, dict[str, str]], bytes],
) -> tuple[bytes, dict[str, object], list[str]]:
    """Do what an answer from the bridge (a hook's, or the waiter's) asks of this host: send the
    files of the project it requests (``REQUESTS_KEY``, ``fulfil``), fetch and write the files
    from Matrix it lists (``ANSWER_KEY``, ``receive``) under ``root``, and return it without
    either key — a file that could not be written named in its own text (``amend_answer``) —,
    as JSON and as a dict (``{}`` for an answer that is not a JSON object, returned as it came),
    with what went wrong, one line each.

    ``call(method, path, body, headers)`` makes one request of the bridge with the hook token
    (``path`` is below its base URL) and returns the body, or raises for any other answer than
    2xx; the command shim gives its own HTTP client."""
    import json

    try:
        data = json.loads(answer)
    except ValueError:
        return answer, {}, []
    if not isinstance(data, dict):
        return answer, {}, []
    problems = []
    requests = data.pop(REQUESTS_KEY, None)
    if isinstance(requests, list) and isinstance(session_id, str):

        def send(path: str, body: bytes, error: str | None) -> None:
            headers = {}
            if error is not None:  # one header line, whatever the reason holds
                reason = error.encode("ascii", "backslashreplace").decode()
                headers[ERROR_HEADER] = " ".join(reason.split())[:500]
            call("POST", path, body, headers)

        problems += fulfil(send, session_id, requests)
    if ANSWER_KEY not in data:
        return json.dumps(data, ensure_ascii=False).encode(), data, problems
    entries = data.pop(ANSWER_KEY)

    def fetch(path: str) -> bytes:
        return call("GET", path, None, {})

    if not isinstance(session_id, str) or not isinstance(entries, list):
        received = ["the answer named files for no session"]
    else:
        received = receive(fetch, root, session_id, entries)
    amend_answer(data, received)
    return json.dumps(data, ensure_ascii=False).encode(), data, problems + received
