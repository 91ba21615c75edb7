"""A Read of the file an operator just attached is allowed at once (``bridge.attachments.allow_read``).

An operator's file reaches Claude as a path under the attachments root on its host, outside the
project, so Claude Code asks permission to Read it: without this the operator who posted the
screenshot would have to approve reading it too. The bridge knows every path it named in a hook
answer (``session_message.file_path``, migration 015), so a PermissionRequest for the Read tool
whose ``file_path`` is *exactly* one of those paths, of *this* session, is answered allow, shown in
the room as "✅ Allowed: reading the file @alice attached" and written to the audit log.

What it trusts: the path string only. It is compared as text after folding repeated and trailing
slashes; a relative path, one with ``.`` or ``..`` components, another session's path, a path
with anything before or after it (``12-a.png.secret``, ``12-a.png/../x``) does not match, and the
bridge never resolves symlinks (the host's ``host_files.write_file`` refuses a symlinked session
folder and writes with ``O_NOFOLLOW``). Only the Read tool: Bash, Write, Edit to the same path
still ask. Everything else goes to the operators as before.
"""

from __future__ import annotations

from claude_bridge.control import decisions
from claude_bridge.events.models import PermissionRequest
from claude_bridge.log import get_logger
from claude_bridge.render.approval import ATTACHED_BY_FIELD
from claude_bridge.store.approvals import Approval, ApprovalStore
from claude_bridge.store.audit import AuditLog
from claude_bridge.store.database import now_ms
from claude_bridge.store.session_messages import SessionInbox

log = get_logger("attached_reads")

READ_TOOL = "Read"
ATTACHED_REASON = decisions.ATTACHED_REASON
ATTACHED_BY = ATTACHED_BY_FIELD


def requested_path(event: PermissionRequest) -> str | None:
    """The path a Read request names, in the form the bridge stored it; None: not a plain Read
    of an absolute path without ``.``/``..`` components (those never match)."""
    if event.tool_name != READ_TOOL:
        return None
    path = event.tool_input.get("file_path")
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path:
        return None
    parts = path.split("/")
    if any(p in (".", "..") for p in parts):
        return None
    return "/" + "/".join(p for p in parts if p)


class AttachedReads:
    def __init__(
        self,
        inbox: SessionInbox,
        store: ApprovalStore,
        audit: AuditLog,
        *,
        enabled: bool,
    ) -> None:
        self.inbox = inbox
        self.store = store
        self.audit = audit
        self.enabled = enabled

    async def attacher(self, event: PermissionRequest, thread_id: str) -> str | None:
        """Who attached the file this Read asks for, if it is one of this session's."""
        if not self.enabled:
            return None
        path = requested_path(event)
        if path is None:
            return None
        message = await self.inbox.attached_at(thread_id, path)
        if message is None or message.from_thread is not None:
            return None
        return message.sender

    async def allow(
        self, event: PermissionRequest, thread_id: str, hook_id: int, *, agent_id: str, who: str
    ) -> Approval:
        """Record the request as allowed by the bridge on ``who``'s behalf (the prompt posted
        for it is edited to say so by ``Receipts``)."""
        await self.store.create(
            hook_id,
            thread_id,
            agent_id=agent_id,
            call_key=decisions.call_key(agent_id, event.tool_name, event.tool_input),
            tool_name=event.tool_name,
            request=decisions.request_of(event),
            expires_at=now_ms(),
        )
        await self.store.decide(hook_id, decisions.ALLOW, by=who, reason=ATTACHED_REASON)
        await self.audit.record(
            thread_id, who, "approval", f"{hook_id} {decisions.ALLOW}: {ATTACHED_REASON}"
        )
        log.info("allowed reading an attached file", hook_event=hook_id, attached_by=who)
        found = await self.store.get(hook_id)
        assert found is not None
        return found
