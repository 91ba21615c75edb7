"""Which hook answer can carry an operator's file, and getting the file where Claude reads it.

Claude Code opens a file by its local path, so a file from Matrix must be on its host before
Claude reads the message naming it. Per answer (``Carrier``):

* **a command path** — the shim with ``--durable``, the background waiter, the runner — says so
  with the ``X-Claude-Bridge-Files`` header (its attachments root, ``host_files``). The message
  names ``<root>/<session>/<id>-<name>``; the answer lists the files under
  ``"claudeBridgeFiles"``, and the host fetches each (``GET …/attachments/<id>``, below, only
  with the owning token) and writes it before Claude Code sees the answer.
* **a plain ``http`` hook of a ``local`` token** — Claude Code on the bridge's machine: the bridge
  writes the file itself under ``bridge.attachments.local_directory`` before answering.
* **a plain ``http`` hook of any other token** cannot carry it: the file, and every message after
  it (order is kept), waits for the session's next command-path answer, and the room is told why
  (once per file).

The ✓ on a file comes once it was written where Claude reads it: the bridge wrote it, or the host
fetched it. A file handed to a command path that its host has not fetched ``FETCH_GRACE`` seconds
later is said in the room (in memory: not after a restart).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from claude_bridge import host_files
from claude_bridge.control.owned import error as _error
from claude_bridge.control.owned import owned_session
from claude_bridge.log import get_logger
from claude_bridge.store import ThreadStore
from claude_bridge.store.session_messages import SessionInbox, SessionMessage

log = get_logger("attachments")

FILE_ROUTE = "/claude/v1/sessions/{session_id}/attachments/{message_id}"
HELD_KEPT = 10_000
FETCH_GRACE = 120.0
MAX_ROOT = 1024


def size_text(size: int) -> str:
    """``240 KB``, ``3.1 MB``: sizes as people read them (powers of 1024)."""
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{int(value)} {unit}" if unit == "B" or value >= 10 else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def valid_root(header: str | None) -> str | None:
    """A command path's attachments root from its header: an absolute, printable path."""
    if header is None:
        return None
    root = header.strip()
    if (
        not root.startswith("/")
        or len(root) > MAX_ROOT
        or not root.isprintable()
        or "/../" in root + "/"
        or "/./" in root + "/"
    ):
        return None
    return root.rstrip("/") or None


@dataclass(frozen=True)
class Carrier:
    """What one answer can do with files."""

    session_id: str
    root: str | None = None
    """Where the files go on Claude's host; None: this answer can't carry files."""
    bridge_writes: bool = False
    """The bridge writes them (a local token); otherwise the host fetches them."""


NO_FILES = Carrier("")


HeldNote = Callable[[SessionMessage], Awaitable[None]]


class FileCarrier:
    def __init__(self, inbox: SessionInbox, store_dir: Path, local_root: str) -> None:
        self.inbox = inbox
        self.store_dir = store_dir
        self.local_root = os.path.abspath(os.path.expanduser(local_root))
        self.on_held: HeldNote | None = None
        self.on_unfetched: HeldNote | None = None
        self._held: set[int] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def carrier(self, session_id: str, header: str | None, local: bool) -> Carrier:
        root = valid_root(header)
        if root is not None:
            return Carrier(session_id, root)
        if local:
            return Carrier(session_id, self.local_root, bridge_writes=True)
        return Carrier(session_id)

    def path(self, message: SessionMessage, carrier: Carrier) -> str:
        assert carrier.root is not None and message.file_name is not None
        return host_files.host_path(carrier.root, carrier.session_id, message.id, message.file_name)

    async def carriable(
        self, queued: Sequence[SessionMessage], carrier: Carrier
    ) -> list[SessionMessage]:
        """The messages this answer may take: all, or those before the first file it can't
        carry (the room is told, once, why that file waits)."""
        if carrier.root is not None:
            return list(queued)
        for i, message in enumerate(queued):
            if message.has_file:
                if i == 0:
                    await self._note_held(message)
                return list(queued[:i])
        return list(queued)

    async def prepare(
        self, prefix: Sequence[SessionMessage], carrier: Carrier
    ) -> list[SessionMessage]:
        """For a bridge that writes the files itself: write them before the claim (a file that
        can't be written cuts the answer before it, and stays queued)."""
        if not carrier.bridge_writes:
            return list(prefix)
        for i, message in enumerate(prefix):
            if not message.has_file or message.file_store is None:
                continue
            try:
                data = await asyncio.to_thread((self.store_dir / message.file_store).read_bytes)
                await asyncio.to_thread(
                    host_files.write_file, carrier.root or "", self.path(message, carrier), data
                )
            except (OSError, host_files.FileRefused) as e:
                log.warning("could not write a file for Claude", message=message.id, error=str(e))
                return list(prefix[:i])
        return list(prefix)

    async def claimed(
        self, claimed: Sequence[SessionMessage], carrier: Carrier
    ) -> list[SessionMessage]:
        """The claimed messages, their files' paths recorded (and in the returned records)."""
        out = []
        for message in claimed:
            if message.has_file and carrier.root is not None:
                path = self.path(message, carrier)
                await self.inbox.set_file_path(message.id, path, fetched=carrier.bridge_writes)
                message = dataclasses.replace(message, file_path=path)
                if not carrier.bridge_writes:
                    self._watch(message)
            out.append(message)
        return out

    @staticmethod
    def to_fetch(messages: Sequence[SessionMessage], carrier: Carrier) -> list[dict[str, object]]:
        """The answer's ``claudeBridgeFiles``: what the host fetches and where it writes it."""
        if carrier.bridge_writes or carrier.root is None:
            return []
        return [
            {"id": m.id, "name": m.file_name, "path": m.file_path}
            for m in messages
            if m.has_file and m.file_path
        ]

    def _watch(self, message: SessionMessage) -> None:
        """Say in the room if the host never fetches this file."""
        loop = asyncio.get_running_loop()

        def check() -> None:
            self._timers.discard(handle)
            task = loop.create_task(self._check_fetched(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        handle = loop.call_later(FETCH_GRACE, check)
        self._timers.add(handle)

    async def _check_fetched(self, message: SessionMessage) -> None:
        try:
            current = await self.inbox.get(message.event_id)
            if (
                current is not None
                and current.state == "delivered"  # not back in the queue (hooks/receipt.py)
                and current.file_fetched_at is None
                and self.on_unfetched
            ):
                await self.on_unfetched(current)
        except Exception as e:
            log.warning("could not check a file was fetched", message=message.id, error=repr(e))

    def close(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    async def _note_held(self, message: SessionMessage) -> None:
        if message.id in self._held or self.on_held is None:
            return
        if len(self._held) >= HELD_KEPT:
            self._held.clear()
        self._held.add(message.id)
        try:
            await self.on_held(message)
        except Exception as e:  # the room not hearing of it must not break a hook answer
            log.warning("could not tell the room a file waits", message=message.id, error=repr(e))


def with_files(answer: dict[str, Any], files: list[dict[str, object]]) -> dict[str, Any]:
    if files:
        answer[host_files.ANSWER_KEY] = files
    return answer


class FileRoute:
    """``GET /claude/v1/sessions/{session_id}/attachments/{message_id}``: a file's bytes, for the
    host whose answer named it. Only the token that owns the session, only files already handed
    to one of its answers (401 no token, 403 another's session, 404 anything else)."""

    def __init__(
        self,
        threads: ThreadStore,
        inbox: SessionInbox,
        store_dir: Path,
        token_name: Callable[[web.Request], str | None],
        on_fetched: Callable[[], None],
    ) -> None:
        self.threads = threads
        self.inbox = inbox
        self.store_dir = store_dir
        self.token_name = token_name
        self.on_fetched = on_fetched

    async def handle(self, request: web.Request) -> web.StreamResponse:
        token = self.token_name(request)
        thread = await owned_session(request, token, self.threads, "fetch its files")
        if isinstance(thread, web.Response):
            return thread
        try:
            message_id = int(request.match_info["message_id"])
        except ValueError:
            return _error(404, "no such file")
        message = await self.inbox.delivered_file(thread.id, message_id)
        if message is None or message.file_store is None:
            return _error(404, "no such file of this session handed to Claude")
        try:
            data = await asyncio.to_thread((self.store_dir / message.file_store).read_bytes)
        except OSError:
            return _error(404, "the file is gone (deleted after the retention period)")
        if await self.inbox.mark_fetched(message.id):
            self.on_fetched()
        return web.Response(body=data, content_type="application/octet-stream")
