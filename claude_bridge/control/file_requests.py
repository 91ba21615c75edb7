"""``!claude file <path>``: a file of the session's project directory, posted into the room.

The bridge never reads the host's disk for this (the host may be another machine, and even on
this one the token may not be ``local``): an operator's request waits, stored, for the
session's next command-path call — a hook through the shim (``--durable``) or the background
waiter, both of which send ``X-Claude-Bridge-Files`` — whose answer lists it under
``"claudeBridgeFileRequests"`` with the project directory the session started in. The host
reads it confined to that directory (``host_files.read_confined``: ``..`` and symlinks refused)
and POSTs the bytes, or why it refused, to ``/claude/v1/sessions/<id>/file-requests/<request>``
(only the token that owns the session). Text is scrubbed like everything the bridge posts, and
a text the scrubber can't bring to rest (scrubbing it again would change it) is refused;
anything else passes as it is. The file is posted as ``m.file`` in reply to the command. A
request nobody takes within ``WAIT`` seconds is answered as such: never silence.

A request is stored (``store/file_requests.py``) before the command is answered and deleted
with its answer or expiry. One outstanding when the bridge stops is offered again after the
restart, with what is left of its ``WAIT``: the host may read the file twice then, and the
first answer posts it (the second finds no request). A host's answer is taken for any request
of its session still outstanding, handed to it by this process or by the one before.
"""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from claude_bridge import host_files
from claude_bridge.config import PermissionLevel
from claude_bridge.config.sections.attachments import AttachmentsConfig
from claude_bridge.control.commands import THREAD, Caller, CommandError, CommandSet, Reply
from claude_bridge.control.file_carrier import size_text
from claude_bridge.control.owned import error, owned_session
from claude_bridge.control.parts import Parts
from claude_bridge.control.room import RoomReplies
from claude_bridge.control.signals import thread_key
from claude_bridge.log import get_logger
from claude_bridge.matrix.client import MatrixError
from claude_bridge.render.messages import TEXT_MIMETYPES
from claude_bridge.render.scrub import Scrubber
from claude_bridge.render.text import one_line
from claude_bridge.store import Thread, now_ms
from claude_bridge.store.file_requests import FileRequestStore, StoredFileRequest

log = get_logger("attachments")

REQUEST_ROUTE = "/claude/v1/sessions/{session_id}/file-requests/{request_id}"
WAIT = 300.0
MAX_PATH = 1024
CHUNK = 64 * 1024


@dataclass
class FileRequest(StoredFileRequest):
    """A stored request, and what this process knows of it."""

    sent_at: float | None = None
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    def wire(self, max_bytes: int) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "root": self.root, "max_bytes": max_bytes}


def request_path(raw: str, project: str | None) -> str:
    """The path to ask the host for, relative to the project directory; ``CommandError`` for
    ``..``, a path outside the project, or one that can't be a path."""
    path = raw.strip()
    if not path or len(path) > MAX_PATH or not path.isprintable():
        raise CommandError("Give a file's path in the project directory, e.g. `src/app.py`.")
    if path.startswith("/"):
        prefix = (project or "").rstrip("/") + "/"
        if not project or not path.startswith(prefix):
            raise CommandError(f"`{one_line(path, 80)}` is outside the project directory.")
        path = path[len(prefix) :]
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise CommandError("A path with `..` is refused: only files inside the project directory.")
    if not parts:
        raise CommandError("Give a file's path in the project directory, e.g. `src/app.py`.")
    return "/".join(parts)


def clear_text(data: bytes, scrub: Scrubber) -> tuple[bytes, bool] | None:
    """A text file's scrubbed bytes and whether scrubbing changed them; None when the scrubber
    can't clear it (scrubbing once more would change it again)."""
    text = data.decode("utf-8")
    once = scrub.text(text)
    if scrub.text(once) != once:
        return None
    return once.encode("utf-8"), once != text


def is_text(data: bytes) -> bool:
    if b"\0" in data[:8192]:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class FileRequests:
    def __init__(
        self,
        parts: Parts,
        replies: RoomReplies,
        options: AttachmentsConfig,
        scrub: Scrubber,
        commands: CommandSet,
        store: FileRequestStore,
    ) -> None:
        self.p = parts
        self.store = store
        self.replies = replies
        self.options = options
        self.scrub = scrub
        self._pending: dict[str, FileRequest] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        commands.add(
            "file",
            "Post a file of the session's project directory here (read on Claude Code's host).",
            self.command,
            level=PermissionLevel.OPERATOR,
            rooms=(THREAD,),
            arguments=[(("path",), {"help": "relative to the project directory"})],
        )

    async def command(self, caller: Caller, args: argparse.Namespace) -> Reply:
        thread = caller.thread
        assert thread is not None  # declared for thread rooms only
        if not thread.project_path:
            raise CommandError("This session's project directory is not known: nothing to read.")
        path = request_path(args.path, thread.project_path)
        request = FileRequest(
            uuid.uuid4().hex,
            thread.id,
            path,
            thread.project_path,
            caller.user_id,
            caller.room_id,
            caller.event_id,
            now_ms(),
        )
        await self.store.add(request)
        self._hold(request, WAIT)
        await self.p.audit.record(thread.id, caller.user_id, "file request", path)
        self.p.signals.fire(thread_key(thread.id))  # a waiting background waiter takes it now
        return Reply(
            f"📄 Asked Claude Code's host for `{path}`. It is read there with the session's next "
            "hook through the command shim (`install-hooks --durable`) or by its background "
            "waiter while the session is idle; plain `http` hooks can't read files."
        )

    async def load(self) -> None:
        """At start: the requests outstanding when the bridge last stopped, each to be offered
        again with what was left of its wait (one whose wait ran out is answered as such)."""
        for row in await self.store.outstanding():
            request = FileRequest(**vars(row))
            self._hold(request, max(0.0, WAIT - (now_ms() - request.asked_at) / 1000))
        if self._pending:
            log.info("file requests outstanding from before a restart", count=len(self._pending))

    def _hold(self, request: FileRequest, wait: float) -> None:
        loop = asyncio.get_running_loop()
        request.timer = loop.call_later(wait, self._expire_later, request)
        self._pending[request.id] = request

    def close(self) -> None:
        """The bridge stops: the outstanding requests stay stored, for :meth:`load`."""
        for request in self._pending.values():
            if request.timer is not None:
                request.timer.cancel()
        self._pending.clear()

    def offer(self, thread_id: str) -> list[dict[str, Any]]:
        """Requests of this thread not yet handed to a host: now handed to this answer."""
        offered = []
        for request in self._pending.values():
            if request.thread_id == thread_id and request.sent_at is None:
                request.sent_at = time.monotonic()
                offered.append(request.wire(self.options.max_bytes))
        return offered

    def waiting(self, thread_id: str) -> bool:
        return any(r.thread_id == thread_id and r.sent_at is None for r in self._pending.values())

    def _expire_later(self, request: FileRequest) -> None:
        task = asyncio.get_running_loop().create_task(self._expire(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _expire(self, request: FileRequest) -> None:
        if self._pending.pop(request.id, None) is None:
            return
        await self.store.remove(request.id)
        thread = await self.p.threads.get(request.thread_id)
        why = (
            "its host took the request but never sent the file"
            if request.sent_at is not None
            else "no command-path call of the session came (idle without the background waiter, "
            "plain `http` hooks, or the session ended)"
        )
        await self._say(thread, request, f"⚠️ `{request.path}` did not come: {why}.")

    async def _say(self, thread: Thread | None, request: FileRequest, text: str) -> None:
        await self.replies.send(
            thread, request.room_id, f"{request.event_id}.file", text, reply_to=request.event_id
        )

    async def handle(self, request: web.Request, token: str | None) -> web.StreamResponse:
        """``POST …/file-requests/<id>``: the host's answer to a request it was handed."""
        thread = await owned_session(request, token, self.p.threads, "answer its file requests")
        if isinstance(thread, web.Response):
            return thread
        # Not only requests this process handed out: the process before may have (see above).
        wanted = self._pending.get(request.match_info["request_id"])
        if wanted is None or wanted.thread_id != thread.id:
            return error(404, "no such file request of this session outstanding")
        refused = request.headers.get(host_files.ERROR_HEADER)
        data = bytearray()
        async for chunk in request.content.iter_chunked(CHUNK):
            data += chunk
            if len(data) > self.options.max_bytes:
                refused = f"larger than {size_text(self.options.max_bytes)}"
                break
        if self._pending.pop(wanted.id, None) is None:  # another answer (or the expiry) came first
            return error(404, "no such file request of this session outstanding")
        if wanted.timer is not None:
            wanted.timer.cancel()
        await self.store.remove(wanted.id)
        if refused is not None:
            await self._say(thread, wanted, f"⚠️ `{wanted.path}` refused: {one_line(refused, 300)}")
        else:
            await self._post(thread, wanted, bytes(data))
        return web.json_response({})

    async def _post(self, thread: Thread, wanted: FileRequest, data: bytes) -> None:
        name = wanted.path.rsplit("/", 1)[-1]
        guessed = mimetypes.guess_type(name)[0] or "application/octet-stream"
        note = ""
        if is_text(data):
            cleared = clear_text(data, self.scrub)
            if cleared is None:
                await self._say(
                    thread, wanted, f"⚠️ `{wanted.path}` refused: its secrets can't be cleared."
                )
                return
            data, changed = cleared
            mimetype = "text/plain; charset=utf-8"
            note = " (secrets redacted)" if changed else ""
        else:
            binary_safe = not guessed.startswith(TEXT_MIMETYPES)
            mimetype = guessed if binary_safe else "application/octet-stream"
        try:
            url = await self.p.client.upload(thread.ghost_mxid, data, name, mimetype)
            content = {
                "msgtype": "m.file",
                "body": name,
                "filename": name,
                "url": url,
                "info": {"mimetype": mimetype.split(";")[0], "size": len(data)},
                "m.relates_to": {"m.in_reply_to": {"event_id": wanted.event_id}},
            }
            await self.p.client.send_event(
                thread.ghost_mxid, wanted.room_id, "m.room.message", content, f"cb.file.{wanted.id}"
            )
        except MatrixError as e:
            log.warning("could not post a requested file", request=wanted.id, error=str(e))
            await self._say(thread, wanted, f"⚠️ `{wanted.path}` could not be posted: {e}")
            return
        await self.p.audit.record(thread.id, wanted.by_user, "file posted", wanted.path + note)
        if note:
            await self._say(thread, wanted, f"📄 `{wanted.path}`{note}.")

    def route(
        self, token_name: Callable[[web.Request], str | None]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self.handle(request, token_name(request))

        return handler
