"""The session inbox → the text a hook answer carries to Claude.

Each message is framed by ``framing``: who wrote it on a line of its own, then its text quoted
(a hand-off says it comes from another session's Claude, not a person). One answer carries
as many queued messages, oldest first, as fit ``message_budget`` characters (Claude Code caps
``additionalContext`` at 10 000); a single longer message is cut, and says so.

Claiming is the moment a message counts as delivered, so it happens only when an answer is about
to be written: right after checking that Claude Code still holds the connection. If the write
then fails (the client vanished in the microseconds between), the message stays marked delivered:
we cannot know, and delivering it twice would be worse than the tiny window. The claim itself is
one conditional UPDATE, so concurrent hooks of one session never carry the same message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from claude_bridge.config.sections.attachments import DEFAULT_DIR, DEFAULT_LOCAL
from claude_bridge.control import framing
from claude_bridge.control.file_carrier import Carrier, FileCarrier, size_text
from claude_bridge.store.session_messages import SessionInbox, SessionMessage

FETCH = 50


PATH_ESTIMATE = "/" * 300
"""What a file's path is counted as before it is known (``fitting``)."""


def attributed(message: SessionMessage) -> str:
    if message.from_thread is not None:
        return framing.from_session(message.from_thread, message.body, message.approved_by)
    if message.file_name is not None:
        return framing.with_file(
            message.sender,
            message.file_name,
            message.file_type or "application/octet-stream",
            size_text(message.file_size or 0),
            message.file_path or PATH_ESTIMATE,
            message.body,
        )
    return framing.from_person(message.sender, message.body)


def compose(messages: Sequence[SessionMessage], budget: int) -> str:
    """The text for Claude: one attributed paragraph per message, cut to ``budget``."""
    text = "\n\n".join(attributed(m) for m in messages)
    if len(text) <= budget:
        return text
    marker = "\n" + framing.cut_marker(len(text) - budget)
    return text[: max(budget - len(marker), 0)] + marker


def fitting(messages: Sequence[SessionMessage], budget: int) -> list[SessionMessage]:
    """The longest prefix of ``messages`` that fits the budget; at least one message."""
    taken: list[SessionMessage] = []
    used = 0
    for message in messages:
        size = len(attributed(message)) + (2 if taken else 0)
        if taken and used + size > budget:
            break
        taken.append(message)
        used += size
    return taken


class MessageQueue:
    def __init__(self, inbox: SessionInbox, budget: int, files: FileCarrier | None = None) -> None:
        self.inbox = inbox
        self.budget = budget
        self.files = files or FileCarrier(inbox, Path(DEFAULT_DIR), DEFAULT_LOCAL)

    async def take(
        self,
        thread_id: str,
        *,
        via: str,
        hook_event_id: int | None,
        connected: Callable[[], bool],
        carrier: Carrier,
    ) -> list[SessionMessage]:
        """Claim what fits in one answer, if the answer still has somewhere to go.

        A file goes only with an answer that can carry it (``carrier``); the messages from the
        first file it can't carry on wait, in order, for one that can."""
        queued = await self.inbox.queued(thread_id, FETCH)
        if not queued or not connected():
            return []
        queued = await self.files.carriable(queued, carrier)
        if not queued:
            return []
        prefix = fitting(queued, self.budget)
        prefix = await self.files.prepare(prefix, carrier)
        if not prefix:
            return []
        claimed = await self.inbox.claim_through(thread_id, prefix[-1].id, via, hook_event_id)
        return await self.files.claimed(claimed, carrier)

    async def give_back(self, thread_id: str, via: str, messages: list[SessionMessage]) -> int:
        """Put messages ``via`` claimed back in their queue, in their order (their ids): the
        answer that carried them never reached its client. How many went back."""
        back = 0
        for message in messages:
            if await self.inbox.requeue(message.id, thread_id, via) is not None:
                back += 1
        return back
