"""An operator's file in a thread room → stored by the bridge, queued for Claude like a text.

``m.image``, ``m.file``, ``m.video`` and ``m.audio`` from an operator (the handler checks the
level; a viewer's file never gets here) are downloaded from the media repository
(``matrix/media.py``, capped at ``bridge.attachments.max_bytes``), kept in the bridge's
attachments directory (one 0700 folder per thread, files 0600), and queued as a
``session_message`` whose body is the caption. From there they go like any message, in order,
once (``control/file_carrier.py`` decides which answer can carry a file). Whatever stops a file
— too large, past the session's total, encrypted, the download failing — is said in the room as
a reply to it: nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import re
from pathlib import Path

from claude_bridge import host_files
from claude_bridge.config.sections.attachments import AttachmentsConfig
from claude_bridge.control.file_carrier import size_text
from claude_bridge.control.parts import Parts
from claude_bridge.control.room import RoomReplies
from claude_bridge.log import get_logger
from claude_bridge.matrix import media
from claude_bridge.matrix.client import MatrixError
from claude_bridge.matrix.inbound_events import FileMessage
from claude_bridge.render.text import one_line
from claude_bridge.store import Thread
from claude_bridge.store.session_messages import SessionMessage, StoredFile

log = get_logger("attachments")

MIMETYPE = re.compile(r"^[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*$")
OCTETS = "application/octet-stream"
TRIES = 2
"""Downloads run on the inbound worker (Matrix events wait meanwhile): one retry only."""
BACKOFF = 0.5


def mimetype_of(declared: str | None, served: str) -> str:
    """The type Claude is told: the sender's, else the media repository's, if it reads as one."""
    for value in (declared, served.partition(";")[0]):
        value = (value or "").strip().lower()
        if MIMETYPE.match(value) and len(value) <= 100:
            return value
    return OCTETS


def file_name(filename: str, mimetype: str) -> str:
    """The sanitised name; an extension from the type when it has none (Claude Code reads an
    image as an image by its extension)."""
    name = host_files.safe_component(filename.strip().rsplit("/", 1)[-1])
    if "." not in name.strip(".") and mimetype != OCTETS:
        ext = mimetypes.guess_extension(mimetype) or ""
        name = host_files.safe_component(name + ext)
    return name


def held_note(message: SessionMessage) -> str:
    """Why a file has not reached Claude yet (said once, as a reply to it)."""
    return (
        f"📎 {message.file_name} waits: this session's hooks are plain `http` and its host is "
        "not the bridge's machine, so the bridge can't put the file where Claude can open it. "
        "It goes with the session's next command-path answer: the background waiter's when the "
        "session is idle, or any hook's with `install-hooks --durable`. Messages written after "
        "it wait too, to keep their order."
    )


class AttachmentIntake:
    def __init__(
        self, parts: Parts, replies: RoomReplies, options: AttachmentsConfig, store_dir: Path
    ) -> None:
        self.p = parts
        self.replies = replies
        self.options = options
        self.store_dir = store_dir

    def path(self, stored: str) -> Path:
        return self.store_dir / stored

    async def take(self, event: FileMessage, thread: Thread) -> StoredFile | None:
        """Download and keep an operator's file; None (the room told why) when it can't go."""
        shown = one_line(event.filename, 80) or "the file"
        if not self.options.enabled:
            await self._refuse(
                event, thread, f"📎 {shown}: files are not forwarded to Claude on this bridge."
            )
            return None
        if event.url is None:
            why = "it is encrypted" if event.encrypted else "it has no media URL"
            await self._refuse(
                event, thread, f"⚠️ {shown} can't be read by the bridge ({why}): not forwarded."
            )
            return None
        cap = self.options.max_bytes
        if event.size is not None and event.size > cap:
            await self._too_large(event, thread, shown, event.size)
            return None
        try:
            data, served = await self._download(event.url, cap)
        except media.TooLarge:
            await self._too_large(event, thread, shown, None)
            return None
        except (media.BadMediaURL, MatrixError) as e:
            log.warning("attachment download failed", event_id=event.event_id, error=str(e))
            await self._refuse(
                event,
                thread,
                f"⚠️ Could not download {shown} from the homeserver ({one_line(str(e), 160)}): "
                "not forwarded to Claude. Send it again to retry.",
            )
            return None
        held = await self.p.inbox.file_bytes(thread.id)
        if held + len(data) > self.options.session_max_bytes:
            await self._refuse(
                event,
                thread,
                f"⚠️ {shown} ({size_text(len(data))}) would take this session's files past "
                f"{size_text(self.options.session_max_bytes)} (bridge.attachments."
                "session_max_bytes): not forwarded.",
            )
            return None
        mimetype = mimetype_of(event.mimetype, served)
        name = file_name(event.filename, mimetype)
        digest = hashlib.sha256(event.event_id.encode()).hexdigest()[:16]
        folder = host_files.safe_component(thread.id, "thread")
        stored = f"{folder}/{digest}-{name}"
        try:
            await asyncio.to_thread(
                host_files.write_file, str(self.store_dir), str(self.path(stored)), data
            )
        except (OSError, host_files.FileRefused) as e:
            log.warning("attachment not stored", event_id=event.event_id, error=str(e))
            await self._refuse(
                event,
                thread,
                f"⚠️ {shown} could not be stored on the bridge ({one_line(str(e), 160)}): not "
                "forwarded to Claude. Send it again to retry.",
            )
            return None
        return StoredFile(name=name, type=mimetype, size=len(data), store=stored)

    async def _download(self, url: str, cap: int) -> tuple[bytes, str]:
        delay = BACKOFF
        for attempt in range(1, TRIES + 1):
            try:
                return await media.download(self.p.client, url, cap)
            except MatrixError as e:
                if not e.temporary or attempt == TRIES:
                    raise
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    async def _too_large(
        self, event: FileMessage, thread: Thread, shown: str, size: int | None
    ) -> None:
        given = f" ({size_text(size)})" if size is not None else ""
        await self._refuse(
            event,
            thread,
            f"⚠️ {shown}{given} is larger than the {size_text(self.options.max_bytes)} the bridge "
            "forwards to Claude (bridge.attachments.max_bytes): not forwarded.",
        )

    async def _refuse(self, event: FileMessage, thread: Thread, text: str) -> None:
        await self.p.audit.record(thread.id, event.sender, "file refused", event.event_id)
        await self.replies.send(thread, event.room_id, event.event_id, text)

    async def discard(self, message: SessionMessage) -> None:
        """Delete the bridge's copy of a file that will not be delivered (withdrawn)."""
        if message.file_store is not None:
            await asyncio.to_thread(self.path(message.file_store).unlink, missing_ok=True)
        await self.p.inbox.forget_file(message.id)

    async def prune(self, cutoff: int) -> int:
        """Delete the files of threads quiet (or ended) since before ``cutoff`` (ms)."""
        gone = 0
        while expired := await self.p.inbox.expired_files(cutoff):
            for message in expired:
                if message.file_store is not None:
                    self.path(message.file_store).unlink(missing_ok=True)
                await self.p.inbox.forget_file(message.id)
                gone += 1
        return gone
