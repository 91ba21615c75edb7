"""``claude-bridge-hook``: hand one Claude Code hook event to the bridge, or spool it.

Claude Code runs this as a command hook: the hook input arrives on stdin, whatever we print on
stdout is the hook output, and Claude Code waits for us on every event. So this module:

* imports the standard library only (no pydantic, aiohttp or ``claude_bridge`` modules): it is
  started once per hook event and its start-up time is added to the user's wait;
* always exits 0 — exit code 2 means "block" to Claude Code — and prints ``{}`` when it has
  nothing from the bridge (``wait``, the background waiter, exits 2 on purpose: see there);
* is bounded by ``--timeout`` for the whole call (draining the spool included);
* never loses an event to a bridge outage: when the bridge is unreachable or answers a temporary
  error, the event goes to a spool directory and is replayed, in order, by the next call;
* never delivers one twice: each event gets a random ``Idempotency-Key`` before its first attempt,
  kept in its spool file's name and sent again on every replay; the bridge stores a key once per
  session. (Byte-identical events — the same Notification twice — are distinct: it is the key,
  not the body, that names an event.)

Start-up is most of its cost, so the common call — ``send`` to an ``http://`` bridge with an
empty spool — imports nothing but this module and ``_socket``: ``install-hooks`` runs it as
``python -I -S -c <loader>`` (no ``site``, ``.pth`` files, environment or current directory;
cached bytecode, see ``installer.fast_shim_argv``) and ``run()`` skips the interpreter's
finalisation. The flags are read without ``argparse`` (``parse_fast``), the request goes over
``_socket`` instead of ``http.client`` (which pulls in ``email`` and ``ssl``), the URL is split
without ``urllib.parse`` and ``posix`` stands in for ``os`` (whose Python layer costs ~1 ms).
Anything else — ``wait``, ``--help``, a flag the fast parser doesn't know, ``https://``, the
spool — imports what it needs when it needs it. ``tests/unit/test_shim.py`` checks the imports;
``bench/shim_vs_curl.py`` measures the result against ``curl``.

Spool layout (one directory per spool, ``$CLAUDE_BRIDGE_SPOOL``)::

    <time_ns>-<pid>-<n>.<key>.json      an event waiting to be sent (the raw hook input);
                                        <key> is its Idempotency-Key (32 hex digits)
    <time_ns>-<pid>-<n>.<key>.sent.json same, but the bridge may already have it (it timed out
                                        after the request went out): replayed with a header
                                        saying so; the key lets the bridge drop a duplicate
    .<name>.tmp                        being written (renamed into place when complete)
    .lock                              flock()ed while a process drains the spool
    rejected/<name>, <name>.error      refused by the bridge (4xx); kept for inspection, never
                                       retried automatically

File names sort lexically in arrival order, so the spool is a FIFO queue. An event never
overtakes a spooled one: while anything is left in the spool, the current event joins it.

Files on this host — an operator's files an answer lists, files of the project it asks for
(``!claude file``), pruning old ones — are ``host_files``' (imported only when an answer names
files, and by the waiter); the shim tells the bridge where they go (``files_header``, on every
call) and lends ``host_files`` its HTTP client (``with_files``).
"""

from __future__ import annotations

import _socket
import posix
import sys
import time

TYPE_CHECKING = False  # typing itself costs start-up time; mypy reads this name specially
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import NoReturn

HOOK_PATH = "/claude/v1/hooks"
DEFAULT_TOKEN_ENV = "CLAUDE_BRIDGE_TOKEN"
DEFAULT_TIMEOUT = 10.0
SPOOLED_HEADER = "X-Claude-Bridge-Spooled"
"""Sent on replayed events: ``1``, or ``maybe-delivered`` when the first attempt timed out after
the request had been sent (the bridge may have processed it already)."""
IDEMPOTENCY_HEADER = "Idempotency-Key"
"""Sent with every event, the same on each replay (``claude_bridge.ids.IDEMPOTENCY_HEADER``)."""

EMPTY_ANSWER = b"{}"
LOCK_WAIT = 1.0
"""How long to wait for another process that is draining the spool before queueing behind it."""
REPLAY_TIMEOUT = 5.0
"""Per replayed event. Nobody waits for a replayed event's answer, so the bridge must not hold it
open (e.g. for a human approval); this cap keeps one slow replay from eating the whole budget."""
MIN_ATTEMPT = 0.2
"""Don't start a request with less time than this left: spool instead."""
MAX_HEAD = 65536
"""Largest response head (status line and headers) we read, as ``http.client``'s line limit."""

_counter = 0


def log(message: str) -> None:
    """One line to stderr (Claude Code shows it in verbose mode). Never pass the token here."""
    print(f"claude-bridge-hook: {message}", file=sys.stderr, flush=True)


def new_key() -> str:
    """A fresh idempotency key: 128 random bits as 32 hex digits."""
    return posix.urandom(16).hex()


def getenv(name: str) -> str | None:
    """``os.environ.get(name)`` without importing ``os`` when nothing has yet."""
    os = sys.modules.get("os")
    if os is not None:  # it may have changed since start-up (an in-process caller)
        value: str | None = os.environ.get(name)
        return value
    raw = posix.environ.get(name.encode())  # bytes on POSIX, as os.environ decodes them
    return None if raw is None else raw.decode(sys.getfilesystemencoding(), "surrogateescape")


# --- talking to the bridge ----------------------------------------------------------------------


class Answer:
    """Outcome of one POST: ``ok`` (2xx), ``permanent`` (never retry) or ``temporary`` (spool)."""

    __slots__ = ("body", "kind", "maybe_delivered", "reason", "status")

    def __init__(
        self,
        kind: str,
        *,
        status: int = 0,
        body: bytes = b"",
        reason: str = "",
        maybe_delivered: bool = False,
    ) -> None:
        self.kind = kind
        self.status = status
        self.body = body
        self.reason = reason
        self.maybe_delivered = maybe_delivered


def is_permanent(status: int) -> bool:
    # 4xx means this request can never succeed as it is (bad input, bad token, too large), except
    # the ones that say "later": timeout, too early, too many requests.
    return 400 <= status < 500 and status not in (408, 425, 429)


def _answer(status: int, data: bytes) -> Answer:
    if 200 <= status < 300:
        return Answer("ok", status=status, body=data)
    kind = "permanent" if is_permanent(status) else "temporary"
    return Answer(kind, status=status, body=data, reason=f"HTTP {status}")


def _unanswered(error: Exception, *, sent: bool) -> Answer:
    # Refused, reset, DNS, TLS or timeout (TimeoutError is an OSError). If it happened after the
    # request went out, the bridge may have it: remember that for the replay.
    what = "no answer" if sent else "unreachable"
    return Answer(
        "temporary", reason=f"{what} ({type(error).__name__}: {error})", maybe_delivered=sent
    )


def split_url(url: str) -> tuple[str, str, int | None, str]:
    """``(scheme, hostname, port, path)`` of an ``http(s)://`` URL, as ``urllib.parse.urlsplit``
    reads them (importing it costs ~5 ms: ``re``, ``collections``…); query and fragment dropped.
    Raises ValueError for anything else, and for spaces or control characters."""
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https") or any(c <= " " or c == "\x7f" for c in url):
        raise ValueError(f"bridge URL must be http(s)://host[:port][/prefix], got {url!r}")
    end = len(rest)
    for c in "/?#":
        if 0 <= (i := rest.find(c)) < end:
            end = i
    netloc, path = rest[:end], rest[end:].partition("?")[0].partition("#")[0]
    hostport = netloc.rpartition("@")[2]  # credentials are never sent
    if hostport.startswith("["):  # [IPv6]:port
        host, _, port_text = hostport[1:].partition("]")
        port_text = port_text.partition(":")[2]
    else:
        host, _, port_text = hostport.partition(":")
    port = None
    if port_text:
        if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
            raise ValueError(f"bad port in bridge URL {url!r}")
        port = int(port_text)
    if not host:
        raise ValueError(f"bridge URL must be http(s)://host[:port][/prefix], got {url!r}")
    return scheme, host.lower(), port, path


class _BadResponse(Exception):
    """The answer is not HTTP we can read, or the connection closed in the middle of it."""


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


def _connect(host: bytes, port: int, deadline: float) -> _socket.socket:
    """``socket.create_connection`` (whose module costs ~6 ms to import: enum, selectors).

    ``host`` is ASCII bytes: given a str, getaddrinfo encodes it with the ``idna`` codec, whose
    import costs ~6 ms (``re``, ``enum``, ``stringprep``)."""
    error: OSError | None = None
    for family, kind, proto, _, address in _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(_left(deadline))
            sock.connect(address)
        except OSError as e:
            sock.close()
            error = e
            continue
        return sock
    raise error or OSError(f"no address for {host.decode()}")


def _recv(sock: _socket.socket, deadline: float) -> bytes:
    sock.settimeout(_left(deadline))
    data: bytes = sock.recv(65536)
    return data


def _read_exact(
    sock: _socket.socket, buf: bytearray, n: int, deadline: float
) -> tuple[bytes, bytearray]:
    while len(buf) < n:
        if not (chunk := _recv(sock, deadline)):
            raise _BadResponse(f"connection closed {len(buf)} bytes into {n}")
        buf += chunk
    return bytes(buf[:n]), buf[n:]


def _read_line(sock: _socket.socket, buf: bytearray, deadline: float) -> tuple[bytes, bytearray]:
    while (i := buf.find(b"\n")) < 0:
        if len(buf) > MAX_HEAD:
            raise _BadResponse("line too long")
        if not (chunk := _recv(sock, deadline)):
            raise _BadResponse("connection closed inside a chunked body")
        buf += chunk
    return bytes(buf[:i]).strip(), buf[i + 1 :]


def _read_head(sock: _socket.socket, buf: bytearray, deadline: float) -> tuple[bytes, bytearray]:
    """The status line and headers (up to the blank line), and what came after them."""
    while True:
        ends = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := buf.find(sep)) >= 0]
        if ends:
            i, n = min(ends)
            return bytes(buf[:i]).replace(b"\r", b""), buf[i + n :]
        if len(buf) > MAX_HEAD:
            raise _BadResponse("response head too long")
        if not (chunk := _recv(sock, deadline)):
            raise _BadResponse("connection closed without a response" if not buf else "cut short")
        buf += chunk


def read_response(sock: _socket.socket, deadline: float) -> tuple[int, bytes]:
    """Status and body of an HTTP/1.x answer: by Content-Length, chunked, or up to the close."""
    buf = bytearray()
    status = 100
    while status < 200:  # an interim 1xx answer comes before the real one
        head, buf = _read_head(sock, buf, deadline)
        lines = head.split(b"\n")
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise _BadResponse(f"not an HTTP status line: {lines[0][:80]!r}")
        status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    if status in (204, 304):
        return status, b""
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        body = bytearray()
        while True:
            line, buf = _read_line(sock, buf, deadline)
            try:
                size = int(line.partition(b";")[0], 16)
            except ValueError:
                raise _BadResponse(f"bad chunk size {line[:20]!r}") from None
            if size <= 0:  # the last chunk; trailers (if any) don't matter: we close
                return status, bytes(body)
            data, buf = _read_exact(sock, buf, size + 2, deadline)  # the chunk and its CRLF
            body += data[:size]
    length = headers.get(b"content-length")
    if length is not None:
        if not length.isdigit():
            raise _BadResponse(f"bad Content-Length {length[:20]!r}")
        return status, _read_exact(sock, buf, int(length), deadline)[0]
    while chunk := _recv(sock, deadline):  # no length: the body ends when the server closes
        buf += chunk
    return status, bytes(buf)


class HookEndpoint:
    def __init__(self, url: str, token: str | None) -> None:
        scheme, self.host, self.port, path = split_url(url)
        self.https = scheme == "https"
        try:
            self.ascii_host = self.host.encode("ascii")
        except UnicodeEncodeError:  # an internationalised name: its xn-- form
            self.ascii_host = self.host.encode("idna")
        path = path.rstrip("/")
        # Accept the endpoint itself as well as the bridge's base URL.
        self.path = path if path.endswith(HOOK_PATH) else path + HOOK_PATH
        if not self.path.isascii():
            raise ValueError(f"bridge URL path must be ASCII (percent-encoded): {url!r}")
        if token and (any(c in token for c in "\r\n\0") or max(token) > "\xff"):
            raise ValueError("the hook token holds a character an HTTP header can't carry")
        self.token = token

    def post(
        self,
        body: bytes,
        *,
        timeout: float,
        replay: str | None = None,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        return self.request(
            "POST", self.path, body, timeout=timeout, replay=replay, key=key, headers=headers
        )

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        timeout: float,
        replay: str | None = None,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """One request on a fresh connection (``Connection: close``). ``timeout`` bounds all of
        it (connect, send, answer) over ``http://``, each step over ``https://``."""
        if self.https:
            return self._request_https(
                method, path, body, timeout=timeout, replay=replay, key=key, headers=headers
            )
        deadline = time.monotonic() + max(timeout, 0.05)
        port = 80 if self.port is None else self.port
        host = self.ascii_host.decode()
        if ":" in host:
            host = f"[{host}]"  # IPv6
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: {host}" if port == 80 else f"Host: {host}:{port}",
            "Accept-Encoding: identity",
            "Content-Type: application/json",
            "Connection: close",
        ]
        if self.token:
            lines.append(f"Authorization: Bearer {self.token}")
        if replay:
            lines.append(f"{SPOOLED_HEADER}: {replay}")
        if key:
            lines.append(f"{IDEMPOTENCY_HEADER}: {key}")
        if headers:
            lines.extend(f"{name}: {value}" for name, value in headers.items())
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        message = "\r\n".join([*lines, "", ""]).encode("latin-1") + (body or b"")
        sent = False
        try:
            sock = _connect(self.ascii_host, port, deadline)
            try:
                sock.settimeout(_left(deadline))
                sock.sendall(message)
                sent = True
                status, data = read_response(sock, deadline)
            finally:
                sock.close()
        except (OSError, _BadResponse) as e:
            return _unanswered(e, sent=sent)
        return _answer(status, data)

    def _request_https(
        self,
        method: str,
        path: str,
        body: bytes | None,
        *,
        timeout: float,
        replay: str | None,
        key: str | None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        import http.client  # TLS: not worth re-implementing; ~15 ms, https bridges only

        conn = http.client.HTTPSConnection(self.host, self.port, timeout=max(timeout, 0.05))
        sending = {"Content-Type": "application/json", "Connection": "close", **(headers or {})}
        if self.token:
            sending["Authorization"] = f"Bearer {self.token}"
        if replay:
            sending[SPOOLED_HEADER] = replay
        if key:
            sending[IDEMPOTENCY_HEADER] = key
        sent = False
        try:
            conn.request(method, path, body=body, headers=sending)
            sent = True
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as e:
            return _unanswered(e, sent=sent)
        finally:
            conn.close()
        return _answer(response.status, data)


# --- the spool ----------------------------------------------------------------------------------
# Only pending() runs on every call (one posix.listdir); the rest imports os and fcntl itself.


def default_spool_dir() -> str:
    cache = getenv("XDG_CACHE_HOME")
    if not cache:
        home = getenv("HOME")
        if home is None:
            import os

            home = os.path.expanduser("~")  # from the password database
        cache = home.rstrip("/") + "/.cache"
    return cache.rstrip("/") + "/claude-bridge/spool"


class Spool:
    def __init__(self, directory: str) -> None:
        self.dir = directory
        self.rejected_dir = directory.rstrip("/") + "/rejected"

    def _path(self, name: str) -> str:
        return self.dir.rstrip("/") + "/" + name

    def pending(self) -> list[str]:
        """Spooled events, oldest first. Cheap enough for every call: one directory listing."""
        try:
            names = posix.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n.endswith(".json") and not n.startswith("."))

    def add(self, body: bytes, key: str, *, maybe_delivered: bool = False) -> str:
        import os

        global _counter
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        # time_ns first so lexical order is arrival order; never sort before what is already
        # spooled, even if the wall clock stepped back.
        stamp = time.time_ns()
        existing = self.pending()
        if existing:
            newest = existing[-1].split("-", 1)[0]
            if newest.isdigit():
                stamp = max(stamp, int(newest) + 1)
        _counter += 1
        suffix = ".sent.json" if maybe_delivered else ".json"
        name = f"{stamp:020d}-{os.getpid():07d}-{_counter:03d}.{key}{suffix}"
        self._write_atomic(self._path(name), body)
        return name

    @staticmethod
    def key_of(name: str) -> str | None:
        """The idempotency key in a spooled file's name; None for a file spooled by a shim
        older than the keys (the bridge then stores it however often it arrives)."""
        base = name.removesuffix(".json").removesuffix(".sent")
        key = base.partition(".")[2]
        return key if key and key.isascii() and key.isalnum() and len(key) <= 64 else None

    def read(self, name: str) -> bytes:
        with open(self._path(name), "rb") as f:
            return f.read()

    def remove(self, name: str) -> None:
        try:
            posix.unlink(self._path(name))
        except FileNotFoundError:
            pass

    def mark_maybe_delivered(self, name: str) -> None:
        """The bridge may have this one already (timed out after sending): say so on replay."""
        if not name.endswith(".sent.json"):
            base = name.removesuffix(".json")
            posix.replace(self._path(name), self._path(base + ".sent.json"))

    def reject(self, name: str, answer: Answer) -> None:
        """Park an event the bridge refused, with the reason, so it is not retried forever."""
        import os

        os.makedirs(self.rejected_dir, mode=0o700, exist_ok=True)
        detail = answer.body[:4096].decode("utf-8", "replace")
        self._write_atomic(
            os.path.join(self.rejected_dir, name + ".error"),
            f"{answer.reason}\n{detail}\n".encode(),
        )
        os.replace(self._path(name), os.path.join(self.rejected_dir, name))

    def _write_atomic(self, path: str, data: bytes) -> None:
        import os

        directory, base = os.path.split(path)
        tmp = os.path.join(directory, f".{base}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)  # the spool is the failure path: survive a crash, a few ms are fine
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def lock(self, wait: float) -> int | None:
        """Take the drain lock, waiting at most ``wait`` seconds. Returns the fd, or None."""
        import fcntl
        import os

        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        fd = os.open(self._path(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        give_up = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= give_up:
                    os.close(fd)
                    return None
                time.sleep(0.02)

    @staticmethod
    def unlock(fd: int) -> None:
        posix.close(fd)  # closing the descriptor releases the flock


def drain(spool: Spool, endpoint: HookEndpoint, deadline: float, *, lock_wait: float) -> str:
    """Send spooled events oldest first.

    Returns ``"done"`` (the spool is empty), ``"busy"`` (another process holds the lock) or
    ``"stuck"`` (the bridge is still unavailable, or time ran out).

    Only one process drains at a time (flock), so no spooled file is sent twice. The lock is held
    for the drain only, never while the current event is sent: that request may legitimately be
    held open by the bridge for minutes (a PermissionRequest waiting for a human) and other
    sessions' hooks must not wait for it.
    """
    fd = spool.lock(min(lock_wait, max(deadline - time.monotonic(), 0.0)))
    if fd is None:
        return "busy"
    try:
        # List again after each pass: others may have queued behind us meanwhile.
        while names := spool.pending():
            for name in names:
                left = deadline - time.monotonic()
                if left < MIN_ATTEMPT:
                    return "stuck"
                try:
                    body = spool.read(name)
                except FileNotFoundError:
                    continue  # removed by hand meanwhile
                replay = "maybe-delivered" if name.endswith(".sent.json") else "1"
                answer = endpoint.post(
                    body,
                    timeout=min(left, REPLAY_TIMEOUT),
                    replay=replay,
                    key=spool.key_of(name),
                )
                if answer.kind == "ok":
                    spool.remove(name)
                elif answer.kind == "permanent":
                    log(
                        f"bridge refused spooled event {name} ({answer.reason}): moved to rejected/"
                    )
                    spool.reject(name, answer)
                else:
                    if answer.maybe_delivered:
                        spool.mark_maybe_delivered(name)
                    log(f"bridge still unavailable ({answer.reason}); events stay spooled")
                    return "stuck"
        return "done"
    finally:
        spool.unlock(fd)


# --- files on this host -------------------------------------------------------------------------
# The root and the header are here, not in host_files, because every call sends them and
# host_files imports os (~1 ms without site).


def default_files_root() -> str:
    """Where files from Matrix go on this host (``host_files``): next to the spool."""
    return default_spool_dir().removesuffix("/spool") + "/attachments"


FILES_HEADER = "X-Claude-Bridge-Files"
"""``host_files.FILES_HEADER``, here too so the common call need not import it."""
FILES_KEY = b'"claudeBridgeFile'
"""Starts both answer keys about files (``host_files.ANSWER_KEY``, ``REQUESTS_KEY``)."""
FILE_TIMEOUT = 30.0
"""At least this long for each request about one file (fetching one from Matrix, sending one of
the project), whatever is left of ``--timeout``."""


def files_header(root: str | None = None) -> dict[str, str]:
    """The header saying this command path (or a runner: ``runner/files.py``) writes files from
    Matrix itself, under ``root`` (this host's default when not given); none when the root can't
    travel in a header: the bridge then holds files for another path."""
    root = default_files_root() if root is None else root
    if not root.startswith("/") or not root.isascii() or not root.isprintable():
        return {}
    return {FILES_HEADER: root}


def with_files(
    endpoint: HookEndpoint, answer: bytes, session_id: object, deadline: float
) -> tuple[bytes, dict[str, object]]:
    """An answer naming files (``FILES_KEY``): ``host_files.settle_answer`` fetches and writes
    the files from Matrix it lists and sends back the files of the project it asks for, over
    this endpoint; the answer without them, as bytes and as a dict. What went wrong is logged."""
    from claude_bridge import host_files

    base = endpoint.path.removesuffix(HOOK_PATH)

    def call(method: str, path: str, body: bytes | None, headers: dict[str, str]) -> bytes:
        timeout = max(deadline - time.monotonic(), FILE_TIMEOUT)
        got = endpoint.request(method, base + path, body, timeout=timeout, headers=headers)
        if got.kind != "ok":
            raise OSError(f"the bridge answered {got.reason or got.status}")
        return got.body

    out, data, problems = host_files.settle_answer(answer, session_id, default_files_root(), call)
    for problem in problems:
        log(problem)
    return out, data


def prune_files() -> int | None:
    """Delete this host's session folders of files from Matrix untouched for
    ``$CLAUDE_BRIDGE_FILES_KEEP_DAYS`` (7) days, at most once a day (``host_files.prune_daily``).
    Only the waiter does it (a background process): never on a hook's path."""
    try:
        from claude_bridge import host_files

        return host_files.prune_daily(default_files_root(), host_files.keep_seconds())
    except Exception as e:  # never let housekeeping cost the session its wake-up
        log(f"could not prune old files: {type(e).__name__}: {e}")
        return None


# --- the command line ---------------------------------------------------------------------------


class Option:
    """One flag of the shim, the single definition both parsers are built from."""

    __slots__ = ("convert", "default", "dest", "flag", "help", "metavar")

    def __init__(
        self,
        flag: str,
        convert: Callable[[str], object],
        default: object,
        help: str,
        metavar: str | None = None,
    ) -> None:
        self.flag = flag
        self.dest = flag.removeprefix("--").replace("-", "_")
        self.convert = convert
        self.default = default
        self.help = help
        self.metavar = metavar


OPTIONS = (
    Option("--url", str, None, "bridge base URL (default: $CLAUDE_BRIDGE_URL)"),
    Option(
        "--token-env",
        str,
        DEFAULT_TOKEN_ENV,
        "environment variable holding the hook token (default: %(default)s)",
        metavar="NAME",
    ),
    Option(
        "--timeout",
        float,
        DEFAULT_TIMEOUT,
        "seconds for the whole call, spool drain included (default: %(default)s); keep it below "
        "the hook's timeout in settings.json",
    ),
    Option(
        "--spool-dir",
        str,
        None,
        "spool directory (default: $CLAUDE_BRIDGE_SPOOL or ~/.cache/claude-bridge/spool)",
    ),
)
_BY_FLAG = {o.flag: o for o in OPTIONS}

WAIT_PATH = "/claude/v1/sessions/{}/wait"
WAIT_POLL = 600.0
WAKE = 2
"""Exit code with which an ``asyncRewake`` hook wakes the session; its stderr is what Claude reads."""
WAIT_BACKOFF_MAX = 30.0
WAIT_GIVE_UP = 60.0
"""The waiter stops once the bridge has been unreachable (or failing) this long: a bridge that
restarts is back well within it, one that was stopped is not worth an hour of polling. A message
written meanwhile is not lost: it waits for the session's next hook."""
WATCH_INTERVAL = 0.5
"""How often the waiter looks whether its Claude Code is still there."""
ATTENDED = "CLAUDE_CODE_SESSION_ATTENDED"
"""Claude Code sets it to 0 for hooks of a session nobody sits at (``claude -p``, the SDK)."""


class Args:
    """The parsed command line: filled by ``parse_fast``, or by argparse as its namespace."""

    url: str | None
    token_env: str
    timeout: float
    spool_dir: str | None

    def __init__(self) -> None:
        self.command = "send"
        self.poll = WAIT_POLL
        self.give_up = WAIT_GIVE_UP
        for option in OPTIONS:
            setattr(self, option.dest, option.default)


def parse_fast(argv: list[str]) -> Args | None:
    """The common command line — flags of ``OPTIONS`` (``--flag value`` or ``--flag=value``),
    then at most ``send`` — without importing argparse (~5 ms). None for anything else (a
    subcommand, ``--help``, an abbreviation, a value that looks like a flag, a bad number): that
    goes to argparse, which reads it, or rejects it, as it always did."""
    args = Args()
    i, n = 0, len(argv)
    while i < n:
        arg = argv[i]
        if arg == "send" and i == n - 1:
            break
        flag, eq, value = arg.partition("=")
        option = _BY_FLAG.get(flag)
        if option is None:
            return None
        if not eq:
            i += 1
            if i == n or argv[i].startswith("-"):
                return None
            value = argv[i]
        try:
            setattr(args, option.dest, option.convert(value))
        except ValueError:
            return None
        i += 1
    return args


class _UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            # argparse would exit 2, which Claude Code reads as "block": fail open instead.
            raise _UsageError(message)

    parser = Parser(
        prog="claude-bridge-hook",
        description="Forward a Claude Code hook event (stdin) to claude-bridge; print its answer.",
    )
    for o in OPTIONS:
        parser.add_argument(
            o.flag, dest=o.dest, type=o.convert, default=o.default, metavar=o.metavar, help=o.help
        )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("send", help="send the hook event on stdin (the default)")
    waiter = sub.add_parser(
        "wait",
        help="as an asyncRewake Stop hook: wait for messages from Matrix to the idle session "
        "and wake it with them (exit 2, messages on stderr); --timeout bounds the whole wait",
    )
    waiter.add_argument(
        "--poll", type=float, default=WAIT_POLL, help="seconds per long-poll (default: %(default)s)"
    )
    waiter.add_argument(
        "--give-up",
        type=float,
        default=WAIT_GIVE_UP,
        help="stop once the bridge has been unreachable this many seconds (default: %(default)s)",
    )
    return parser


def parse_args(argv: list[str]) -> Args:
    args = parse_fast(argv)
    if args is None:
        args = build_parser().parse_args(argv, namespace=Args())
    return args


# --- commands -----------------------------------------------------------------------------------


def send(args: Args) -> bytes:
    """Forward the event on stdin; return what to print on stdout."""
    body = sys.stdin.buffer.read()
    deadline = time.monotonic() + args.timeout
    url = args.url or getenv("CLAUDE_BRIDGE_URL")
    if not url:
        log("no bridge URL (--url or $CLAUDE_BRIDGE_URL); event dropped")
        return EMPTY_ANSWER
    endpoint = HookEndpoint(url, getenv(args.token_env))
    spool = Spool(args.spool_dir or getenv("CLAUDE_BRIDGE_SPOOL") or default_spool_dir())
    key = new_key()  # once: the first attempt and every replay carry the same one

    if spool.pending():
        state = drain(spool, endpoint, deadline, lock_wait=LOCK_WAIT)
        if state != "done":
            # Something older is still waiting: this event must not overtake it.
            spool.add(body, key)
            if state == "busy":
                # The lock holder may have finished its last listing before our file landed;
                # one non-waiting attempt keeps the event from sitting until the next call.
                log("another process is draining the spool; event queued behind it")
                drain(spool, endpoint, deadline, lock_wait=0.0)
            return EMPTY_ANSWER

    left = deadline - time.monotonic()
    if left < MIN_ATTEMPT:
        spool.add(body, key)
        log("out of time after draining the spool; event spooled")
        return EMPTY_ANSWER
    answer = endpoint.post(body, timeout=left, key=key, headers=files_header())
    if answer.kind == "ok":
        if FILES_KEY in answer.body:  # files from Matrix to write before Claude reads the path
            import json

            try:
                session_id = json.loads(body).get("session_id")
            except (ValueError, AttributeError):
                session_id = None
            return with_files(endpoint, answer.body, session_id, deadline)[0]
        return answer.body
    if answer.kind == "permanent":
        # Retrying cannot help (bad input or token); keep Claude Code going without a decision.
        log(f"bridge refused the event ({answer.reason}): {answer.body[:200]!r}")
        return EMPTY_ANSWER
    name = spool.add(body, key, maybe_delivered=answer.maybe_delivered)
    log(f"bridge unavailable ({answer.reason}); event spooled as {name}")
    return EMPTY_ANSWER


def exit_with_claude_code() -> None:
    """End this process as soon as the Claude Code that started it is gone.

    Claude Code runs a hook through ``sh -c`` in a process group of its own, and when it is
    killed nothing stops a running async hook: the waiter would be reparented to init and poll
    for up to its ``--timeout``. Its stdout and stderr are sockets (or pipes) whose other end
    only Claude Code holds, so they hang up when it goes, whoever our parent is (the shell
    outlives it); a changed parent pid says the same when the shell exec'd us. stdin says
    nothing: its writer may close it as soon as the input is written.
    """
    import select
    import stat
    import threading

    parent = posix.getppid()
    channels = []
    for fd in (1, 2):
        try:
            mode = posix.fstat(fd).st_mode
        except OSError:
            continue
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):  # a file or a terminal never hangs up
            channels.append(fd)

    def watch() -> None:
        poller = select.poll()
        for fd in channels:
            poller.register(fd, 0)  # nothing asked: only hang-ups and errors are reported
        open_channels = set(channels)
        while True:
            for fd, _ in poller.poll(WATCH_INTERVAL * 1000):
                poller.unregister(fd)
                open_channels.discard(fd)
            if posix.getppid() != parent or (channels and not open_channels):
                posix._exit(0)

    threading.Thread(target=watch, name="exit-with-claude-code", daemon=True).start()


def wait(args: Args) -> tuple[bytes, int]:
    """Long-poll the bridge until someone in Matrix writes to this (idle) session.

    Exit 2 with the messages on stderr wakes Claude with them; exit 0 (nothing printed) when the
    time is up, a newer waiter of the session took over (410), the bridge refuses or has been
    unreachable for ``--give-up`` seconds, or the Claude Code that started it is gone
    (``exit_with_claude_code``). Nothing else goes to stderr: an ``asyncRewake`` hook's stderr is
    what Claude is shown.

    In an unattended session it exits at once: ``claude -p`` has no idle prompt to wake, and
    Claude Code 2.1.332 holds its exit up to 30 s for a running ``asyncRewake`` hook (a
    message written meanwhile stays queued for the session's next hook, e.g. ``--resume``).
    """
    if getenv(ATTENDED) == "0":
        return b"", 0
    import json  # only here: a background process, its start-up time is nobody's wait
    import urllib.parse

    exit_with_claude_code()
    started = time.time_ns()  # a later waiter of the same session supersedes this one
    deadline = time.monotonic() + args.timeout
    try:
        session_id = json.loads(sys.stdin.buffer.read() or b"{}").get("session_id")
    except (ValueError, AttributeError):
        session_id = None
    session_id = session_id or getenv("CLAUDE_CODE_SESSION_ID")
    url = args.url or getenv("CLAUDE_BRIDGE_URL")
    if not isinstance(session_id, str) or not session_id or not url:
        return b"", 0
    prune_files()
    endpoint = HookEndpoint(url, getenv(args.token_env))
    base = endpoint.path.removesuffix(HOOK_PATH) + WAIT_PATH.format(urllib.parse.quote(session_id))
    delay = 0.5
    failing_since: float | None = None
    while (left := deadline - time.monotonic()) >= MIN_ATTEMPT:
        poll = min(left, args.poll)
        query = urllib.parse.urlencode({"timeout": f"{poll:.1f}", "since": started})
        asked = time.monotonic()
        answer = endpoint.request(
            "GET", f"{base}?{query}", timeout=poll + 15, headers=files_header()
        )
        if answer.kind == "ok" and answer.status == 200:
            try:
                data = with_files(endpoint, answer.body, session_id, time.monotonic())[1]
                text = data["text"]
            except (ValueError, KeyError, TypeError):
                return b"", 0
            if not text:  # it only asked for files of the project: keep waiting
                delay = 0.5
                continue
            # UTF-8 whatever the locale says (-I ignores PYTHONIOENCODING and PYTHONUTF8)
            sys.stderr.flush()
            sys.stderr.buffer.write(f"{text}\n".encode("utf-8", "backslashreplace"))
            sys.stderr.flush()
            return b"", WAKE
        if answer.kind == "permanent":
            return b"", 0  # superseded (410), not ours (403), unknown session (404), bad token
        busy = _retry_after(answer.body) if answer.status == 503 else None
        if busy is not None:
            # The bridge is up but holds every connection it may: not a failure, wait as told.
            failing_since = None
            time.sleep(max(min(busy, deadline - time.monotonic()), 0))
            continue
        now = time.monotonic()
        if answer.kind == "temporary":
            failing_since = now if failing_since is None else failing_since
            if now - failing_since >= args.give_up:
                return b"", 0
        else:
            failing_since = None
        # Unreachable or 5xx (the bridge is restarting), or a 204 long before the poll was up
        # (it is stopping): try again, patiently. A 204 after a full poll: poll again at once.
        if answer.kind == "temporary" or answered_early(now - asked, poll):
            pause = min(delay, deadline - now)
            if failing_since is not None:  # one last try right at the give-up bound
                pause = min(pause, failing_since + args.give_up - now)
            time.sleep(max(pause, 0))
            delay = min(delay * 2, WAIT_BACKOFF_MAX)
        else:
            delay = 0.5
    return b"", 0


EARLY_ANSWER = 5.0
"""A 204 this soon (or within half the poll, if shorter) is a bridge that is stopping, not a
poll that ran out."""


def answered_early(elapsed: float, poll: float) -> bool:
    """Whether a 204 after ``elapsed`` s of a ``poll`` s long-poll came early. A bridge may hold
    a poll for less than asked (``bridge.control.max_wait``, 300 s in configs written before
    the default became 600): that is a poll that ran out, polled again at once."""
    return elapsed < min(poll / 2, EARLY_ANSWER)


def _retry_after(body: bytes) -> float | None:
    """The ``retry_after`` seconds of a 503 the bridge sends when every held-connection slot is
    taken (``hooks/held.py``); None for any other 503 (a restart, the database away)."""
    import json

    try:
        value = json.loads(body).get("retry_after")
    except (ValueError, AttributeError):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 3600:
        return float(value)
    return None


def main(argv: list[str] | None = None) -> int:
    out, code = EMPTY_ANSWER, 0
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        if args.command == "wait":
            out, code = wait(args)
        else:
            out = send(args)
    except _UsageError as e:
        log(f"usage error: {e}")
    except Exception as e:  # never let a bug block or break Claude Code
        log(f"internal error, event dropped: {type(e).__name__}: {e}")
    try:
        sys.stdout.buffer.write(out)
        sys.stdout.flush()
    except OSError:
        pass  # Claude Code stopped listening (timeout): nothing left to do
    return code


def run() -> NoReturn:
    """The installed command's entry point (``python -I -S …``): ``main()``, then exit at once.

    Both output streams are flushed and nothing else is left open, so the interpreter's
    finalisation (~1 ms: tearing down modules) has nothing to do for us: skip it.
    """
    code = main()
    try:
        sys.stderr.flush()
    except OSError:
        pass
    posix._exit(code)


if __name__ == "__main__":
    run()
