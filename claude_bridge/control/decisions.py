"""Approval decisions, pure: what a reaction or a reply means, what the hook answers, and the
line the request message gets once it is settled.

PermissionRequest output (Claude Code hooks reference): ``hookSpecificOutput.decision`` with
``behavior: "allow"`` (optionally ``updatedPermissions``: the ``permission_suggestions`` Claude
Code offered, which is what "allow for this session" means) or ``behavior: "deny"`` with a
``message`` for Claude. No decision (``{}``) makes Claude Code show its own dialog.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from claude_bridge.config.sections.mirror import RedactConfig
from claude_bridge.control import framing
from claude_bridge.events.catalogue import PERMISSION_REQUEST
from claude_bridge.render.scrub import scrubber_for
from claude_bridge.render.text import esc, one_line
from claude_bridge.render.tools import display_name, summary
from claude_bridge.store.approvals import Approval

ALLOW, ALWAYS, DENY = "allowed", "allowed_always", "denied"

# Reaction keys as clients send them (with or without the emoji variation selector).
REACTIONS = {
    "✅": ALLOW, "✔️": ALLOW, "✔": ALLOW, "👍": ALLOW, "👍️": ALLOW,
    "♾️": ALWAYS, "♾": ALWAYS, "🔁": ALWAYS,
    "❌": DENY, "✖️": DENY, "🚫": DENY, "👎": DENY, "👎️": DENY,
}  # fmt: skip
REPLY_WORDS = {
    "allow": ALLOW, "yes": ALLOW, "approve": ALLOW, "ok": ALLOW, "y": ALLOW,
    "always": ALWAYS, "allow-always": ALWAYS,
    "deny": DENY, "no": DENY, "reject": DENY, "n": DENY,
}  # fmt: skip


def call_key(agent_id: str, tool_name: str, tool_input: Any) -> str:
    """Identifies one tool call across events (PermissionRequest carries no tool_use_id)."""
    canonical = json.dumps([agent_id, tool_name, tool_input], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def from_reaction(key: str) -> str | None:
    return REACTIONS.get(key.strip())


def from_reply(body: str) -> tuple[str, str | None] | None:
    """``allow`` / ``always`` / ``deny <reason>`` (first word, any case) → (decision, reason)."""
    word, _, rest = body.strip().partition(" ")
    decision = REPLY_WORDS.get(word.strip().lower().rstrip(".!:,"))
    if decision is None:
        decision = REACTIONS.get(word.strip())
    if decision is None:
        return None
    reason = rest.strip() or None
    return decision, reason if decision == DENY else None


def answer(approval: Approval) -> dict[str, Any]:
    """The PermissionRequest hook output for a settled approval (``{}``: no decision)."""
    by = approval.decided_by or "someone"
    if approval.state in (ALLOW, ALWAYS):
        decision: dict[str, Any] = {"behavior": "allow"}
        suggestions = approval.request.get("permission_suggestions")
        if approval.state == ALWAYS and suggestions:
            decision["updatedPermissions"] = suggestions
    elif approval.state == DENY:
        decision = {"behavior": "deny", "message": framing.denial(by, approval.reason)}
    else:
        return {}
    return {"hookSpecificOutput": {"hookEventName": PERMISSION_REQUEST.name, "decision": decision}}


def outcome(approval: Approval, timeout: float) -> str:
    """One line saying how the request ended and who decided (plain text)."""
    by = approval.decided_by or ""
    if approval.state == ALLOW:
        return f"✅ Allowed once by {by}"
    if approval.state == ALWAYS:
        if approval.request.get("permission_suggestions"):
            return f"🔁 Allowed for this session by {by}"
        return f"✅ Allowed by {by} (Claude Code offered no session rule: allowed once)"
    if approval.state == DENY:
        return f"❌ Denied by {by}" + (f": {approval.reason}" if approval.reason else "")
    if approval.state == "timed_out":
        minutes = f"{timeout / 60:g} min" if timeout >= 60 else f"{timeout:g} s"
        return f"⌛ No decision within {minutes}: Claude Code asks in the terminal"
    return f"🖥️ Not decided here: {approval.reason or 'answered in the terminal'}"


def tool_summary(approval: Approval) -> str:
    tool_input = approval.request.get("tool_input")
    # Scrubbed before it is cut to length: a key cut in half is too short for its pattern when
    # the client scrubs the finished message.
    arg = summary(
        approval.tool_name,
        scrubber_for(RedactConfig()).value(tool_input) if isinstance(tool_input, dict) else {},
        approval.request.get("cwd"),
        120,
    )
    name = display_name(approval.tool_name)
    return f"{name}: {arg}" if arg else name


def settled_content(approval: Approval, original: dict[str, Any], timeout: float) -> dict[str, Any]:
    """The request message's new content: the outcome line first, the request kept below it."""
    line = outcome(approval, timeout)
    body = original.get("body") if isinstance(original.get("body"), str) else ""
    html = original.get("formatted_body")
    content: dict[str, Any] = {
        "msgtype": "m.notice",
        "body": f"{line}\n{body}" if body else f"{line} — {tool_summary(approval)}",
        "m.mentions": {},
    }
    if isinstance(html, str):
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = f"<p><b>{esc(line)}</b></p>{html}"
    return content


def already_decided(approval: Approval, timeout: float) -> str:
    what = one_line(outcome(approval, timeout), 200)
    return f"Already settled: {what}. Your decision was not used."
