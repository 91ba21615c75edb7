"""``claude-bridge-hook``: hand one Claude Code hook event to the bridge, or spool it.

Claude Code runs this as a command hook: the hook input arrives on stdin, whatever we print on
stdout is the hook output, and Claude Code waits for us on every event. So this module:

* imports the standard library only (no pydantic, aiohttp or ``claude_bridge`` modules): it is
  started once per hook event and its start-up time is added to the user's wait;
* always exits 0 — exit code 2 means "block" to Claude Code — and prints ``{}`` when it has
  nothing from the bridge;
* is bounded by ``--timeout`` for the whole call (draining the spool included);
* never loses an event to a bridge outage: when the bridge is unreachable or answers a temporary
  error, the event goes to a spool directory and is replayed, in order, by the next call.

Spool layout (one directory per spool, ``$CLAUDE_BRIDGE_SPOOL``)::

    <time_ns>-<pid>-<n>.json           an event waiting to be sent (the raw hook input)
    <time_ns>-<pid>-<n>.sent.json      same, but the bridge may already have it (it timed out
                                       after the request went out): replayed with a header
                                       saying so, so the bridge can drop a duplicate
    .<name>.tmp                        being written (renamed into place when complete)
    .lock                              flock()ed while a process drains the spool
    rejected/<name>, <name>.error      refused by the bridge (4xx); kept for inspection, never
                                       retried automatically

File names sort lexically in arrival order, so the spool is a FIFO queue. An event never
overtakes a spooled one: while anything is left in the spool, the current event joins it.
"""

from __future__ import annotations

import argparse
import fcntl
import http.client
import os
import sys
import time
import urllib.parse

HOOK_PATH = "/claude/v1/hooks"
DEFAULT_TOKEN_ENV = "CLAUDE_BRIDGE_TOKEN"
DEFAULT_TIMEOUT = 10.0
SPOOLED_HEADER = "X-Claude-Bridge-Spooled"
"""Sent on replayed events: ``1``, or ``maybe-delivered`` when the first attempt timed out after
the request had been sent (the bridge may have processed it already)."""

EMPTY_ANSWER = b"{}"
LOCK_WAIT = 1.0
"""How long to wait for another process that is draining the spool before queueing behind it."""
REPLAY_TIMEOUT = 5.0
"""Per replayed event. Nobody waits for a replayed event's answer, so the bridge must not hold it
open (e.g. for a human approval); this cap keeps one slow replay from eating the whole budget."""
MIN_ATTEMPT = 0.2
"""Don't start a request with less time than this left: spool instead."""

_counter = 0


def log(message: str) -> None:
    """One line to stderr (Claude Code shows it in verbose mode). Never pass the token here."""
    print(f"claude-bridge-hook: {message}", file=sys.stderr, flush=True)


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


class Bridge:
    def __init__(self, url: str, token: str | None) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"bridge URL must be http(s)://host[:port][/prefix], got {url!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port
        path = parts.path.rstrip("/")
        # Accept the endpoint itself as well as the bridge's base URL.
        self.path = path if path.endswith(HOOK_PATH) else path + HOOK_PATH
        self.token = token

    def post(self, body: bytes, *, timeout: float, replay: str | None = None) -> Answer:
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=max(timeout, 0.05))
        headers = {"Content-Type": "application/json", "Connection": "close"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if replay:
            headers[SPOOLED_HEADER] = replay
        sent = False
        try:
            conn.request("POST", self.path, body=body, headers=headers)
            sent = True
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as e:
            # Refused, reset, DNS, TLS or timeout (TimeoutError is an OSError). If it happened
            # after the request went out, the bridge may have it: remember that for the replay.
            what = "no answer" if sent else "unreachable"
            return Answer(
                "temporary", reason=f"{what} ({type(e).__name__}: {e})", maybe_delivered=sent
            )
        finally:
            conn.close()
        status = response.status
        if 200 <= status < 300:
            return Answer("ok", status=status, body=data)
        kind = "permanent" if is_permanent(status) else "temporary"
        return Answer(kind, status=status, body=data, reason=f"HTTP {status}")


# --- the spool ----------------------------------------------------------------------------------


def default_spool_dir() -> str:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "claude-bridge", "spool")


class Spool:
    def __init__(self, directory: str) -> None:
        self.dir = directory
        self.rejected_dir = os.path.join(directory, "rejected")

    def pending(self) -> list[str]:
        """Spooled events, oldest first. Cheap enough for every call: one directory listing."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n.endswith(".json") and not n.startswith("."))

    def add(self, body: bytes, *, maybe_delivered: bool = False) -> str:
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
        name = f"{stamp:020d}-{os.getpid():07d}-{_counter:03d}{suffix}"
        self._write_atomic(os.path.join(self.dir, name), body)
        return name

    def read(self, name: str) -> bytes:
        with open(os.path.join(self.dir, name), "rb") as f:
            return f.read()

    def remove(self, name: str) -> None:
        try:
            os.unlink(os.path.join(self.dir, name))
        except FileNotFoundError:
            pass

    def mark_maybe_delivered(self, name: str) -> None:
        """The bridge may have this one already (timed out after sending): say so on replay."""
        if not name.endswith(".sent.json"):
            base = name.removesuffix(".json")
            os.replace(os.path.join(self.dir, name), os.path.join(self.dir, base + ".sent.json"))

    def reject(self, name: str, answer: Answer) -> None:
        """Park an event the bridge refused, with the reason, so it is not retried forever."""
        os.makedirs(self.rejected_dir, mode=0o700, exist_ok=True)
        detail = answer.body[:4096].decode("utf-8", "replace")
        self._write_atomic(
            os.path.join(self.rejected_dir, name + ".error"),
            f"{answer.reason}\n{detail}\n".encode(),
        )
        os.replace(os.path.join(self.dir, name), os.path.join(self.rejected_dir, name))

    def _write_atomic(self, path: str, data: bytes) -> None:
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
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self.dir, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
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
        os.close(fd)  # closing the descriptor releases the flock


def drain(spool: Spool, bridge: Bridge, deadline: float, *, lock_wait: float) -> str:
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
                answer = bridge.post(body, timeout=min(left, REPLAY_TIMEOUT), replay=replay)
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


# --- commands -----------------------------------------------------------------------------------


def send(args: argparse.Namespace) -> bytes:
    """Forward the event on stdin; return what to print on stdout."""
    body = sys.stdin.buffer.read()
    deadline = time.monotonic() + args.timeout
    url = args.url or os.environ.get("CLAUDE_BRIDGE_URL")
    if not url:
        log("no bridge URL (--url or $CLAUDE_BRIDGE_URL); event dropped")
        return EMPTY_ANSWER
    bridge = Bridge(url, os.environ.get(args.token_env))
    spool = Spool(args.spool_dir or os.environ.get("CLAUDE_BRIDGE_SPOOL") or default_spool_dir())

    if spool.pending():
        state = drain(spool, bridge, deadline, lock_wait=LOCK_WAIT)
        if state != "done":
            # Something older is still waiting: this event must not overtake it.
            spool.add(body)
            if state == "busy":
                # The lock holder may have finished its last listing before our file landed;
                # one non-waiting attempt keeps the event from sitting until the next call.
                log("another process is draining the spool; event queued behind it")
                drain(spool, bridge, deadline, lock_wait=0.0)
            return EMPTY_ANSWER

    left = deadline - time.monotonic()
    if left < MIN_ATTEMPT:
        spool.add(body)
        log("out of time after draining the spool; event spooled")
        return EMPTY_ANSWER
    answer = bridge.post(body, timeout=left)
    if answer.kind == "ok":
        return answer.body
    if answer.kind == "permanent":
        # Retrying cannot help (bad input or token); keep Claude Code going without a decision.
        log(f"bridge refused the event ({answer.reason}): {answer.body[:200]!r}")
        return EMPTY_ANSWER
    name = spool.add(body, maybe_delivered=answer.maybe_delivered)
    log(f"bridge unavailable ({answer.reason}); event spooled as {name}")
    return EMPTY_ANSWER


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse would exit 2, which Claude Code reads as "block": fail open instead.
        raise _UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="claude-bridge-hook",
        description="Forward a Claude Code hook event (stdin) to claude-bridge; print its answer.",
    )
    parser.add_argument("--url", help="bridge base URL (default: $CLAUDE_BRIDGE_URL)")
    parser.add_argument(
        "--token-env",
        default=DEFAULT_TOKEN_ENV,
        metavar="NAME",
        help=f"environment variable holding the hook token (default: {DEFAULT_TOKEN_ENV})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds for the whole call, spool drain included (default: %(default)s); keep it "
        "below the hook's timeout in settings.json",
    )
    parser.add_argument(
        "--spool-dir",
        help="spool directory (default: $CLAUDE_BRIDGE_SPOOL or ~/.cache/claude-bridge/spool)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("send", help="send the hook event on stdin (the default)")
    parser.set_defaults(func=send)
    return parser


def main(argv: list[str] | None = None) -> int:
    out = EMPTY_ANSWER
    try:
        args = build_parser().parse_args(argv)
        out = args.func(args)
    except _UsageError as e:
        log(f"usage error: {e}")
    except Exception as e:  # never let a bug block or break Claude Code
        log(f"internal error, event dropped: {type(e).__name__}: {e}")
    try:
        sys.stdout.buffer.write(out)
        sys.stdout.flush()
    except OSError:
        pass  # Claude Code stopped listening (timeout): nothing left to do
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
