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
import re
from typing import Any

from claude_bridge.config.sections.mirror import RedactConfig
from claude_bridge.control import framing
from claude_bridge.events.catalogue import PERMISSION_REQUEST
from claude_bridge.events.models import PermissionRequest
from claude_bridge.render.approval import REQUEST_FIELD
from claude_bridge.render.content import pill
from claude_bridge.render.scrub import scrubber_for
from claude_bridge.render.text import esc, one_line
from claude_bridge.render.tools import display_name, summary
from claude_bridge.render.trim import limit
from claude_bridge.store.approvals import DECIDED, Approval

ALLOW, ALWAYS, DENY = "allowed", "allowed_always", "denied"
ATTACHED_REASON = "attached-file"
"""``approval.reason`` of a Read the bridge allowed because the file was an operator's
(``control/attached_reads``)."""

# Reaction keys by meaning, as clients offer them first (Element's quick reactions start with
# 👍 and 👎). A key is looked up without emoji variation selectors and skin-tone modifiers, so
# ✔️ is ✔ and 👍🏽 is 👍. ✓ is not here: it is the bridge's own "delivered" mark.
_KEYS = {ALLOW: "✅ ✔ ☑ 👍 🆗", ALWAYS: "🔁 ♾", DENY: "❌ ❎ ✖ 🚫 👎 ⛔"}
REACTIONS = {key: decision for decision, keys in _KEYS.items() for key in keys.split()}
_MODIFIERS = re.compile("[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]")
_REASON_CHARS = 300
# An edit carries its content twice (``m.new_content`` and the fallback): half an event each.
_EDIT_BUDGET = 30_000
REPLY_WORDS = {
    "allow": ALLOW, "yes": ALLOW, "approve": ALLOW, "ok": ALLOW, "y": ALLOW,
    "always": ALWAYS, "allow-always": ALWAYS,
    "deny": DENY, "no": DENY, "reject": DENY, "n": DENY,
}  # fmt: skip


def request_of(event: PermissionRequest) -> dict[str, Any]:
    """What an approval row keeps of the request (``approval.request``)."""
    return {
        "tool_input": event.tool_input,
        "permission_suggestions": event.permission_suggestions,
        "cwd": event.cwd,
    }


def call_key(agent_id: str, tool_name: str, tool_input: Any) -> str:
    """Identifies one tool call across events (PermissionRequest carries no tool_use_id)."""
    canonical = json.dumps([agent_id, tool_name, tool_input], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def from_reaction(key: str) -> str | None:
    return REACTIONS.get(_MODIFIERS.sub("", key.strip()))


def unknown_reaction(key: str) -> str:
    """The answer to a reaction on a prompt that decides nothing: every key that does."""
    shown = one_line(key.replace("`", ""), 16) or "That reaction"
    allow, always, deny = (" ".join(_KEYS[d].split()) for d in (ALLOW, ALWAYS, DENY))
    return (
        f"{shown} does not decide this request. Reactions that do: {allow} allow once · "
        f"{always} allow for this session · {deny} deny — or reply `allow`, `always` or "
        "`deny <reason>`."
    )


def from_reply(body: str) -> tuple[str, str | None] | None:
    """``allow`` / ``always`` / ``deny <reason>`` (first word, any case) → (decision, reason)."""
    word, _, rest = body.strip().partition(" ")
    decision = REPLY_WORDS.get(word.strip().lower().rstrip(".!:,"))
    if decision is None:
        decision = from_reaction(word)
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


def outcome(approval: Approval, timeout: float, who: str | None = None) -> str:
    """One line saying how the request ended and who decided (plain text); ``who``: how the
    decider is named (their display name), by default their user id."""
    by = who or approval.decided_by or ""
    if approval.state == ALLOW and approval.reason == ATTACHED_REASON:
        return f"✅ Allowed: reading the file {by} attached"
    if approval.state == ALLOW:
        return f"✅ Allowed once by {by}"
    if approval.state == ALWAYS:
        if approval.request.get("permission_suggestions"):
            return f"🔁 Allowed for this session by {by}"
        return f"✅ Allowed by {by} (Claude Code offered no session rule: allowed once)"
    if approval.state == DENY:
        reason = one_line(approval.reason or "", _REASON_CHARS)
        return f"❌ Denied by {by}" + (f": {reason}" if reason else "")
    if approval.state == "timed_out":
        minutes = f"{timeout / 60:g} min" if timeout >= 60 else f"{timeout:g} s"
        return f"⌛ No decision within {minutes}: Claude Code asks in the terminal"
    return f"🖥️ Not decided here: {approval.reason or 'answered in the terminal'}"


def _outcome_html(approval: Approval, timeout: float, who: str | None) -> str:
    """The outcome line in HTML: the decider as a pill (a link to them; it pings nobody, the
    content's ``m.mentions`` is empty), named ``who``."""
    line = esc(outcome(approval, timeout, who))
    by = approval.decided_by
    if not by or approval.state not in DECIDED:
        return line
    name = esc(who or by)
    if approval.reason == ATTACHED_REASON and approval.state == ALLOW:
        head, sep, tail = line.partition(f"file {name} attached")
        return f"{head}file {pill(by, who or by)} attached{tail}" if sep else line
    head, sep, tail = line.partition(f"by {name}")
    return f"{head}by {pill(by, who or by)}{tail}" if sep else line


def denied_note(approval: Approval, who: str | None) -> str:
    """What a call denied here shows on its tool line."""
    reason = one_line(approval.reason or "", _REASON_CHARS)
    return f"denied by {who or approval.decided_by or 'someone'}" + (
        f": {reason}" if reason else ""
    )


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


def settled_content(
    approval: Approval, original: dict[str, Any], timeout: float, who: str | None = None
) -> dict[str, Any]:
    """The prompt's new content: the outcome line in place of the question and instructions,
    over the request part the prompt kept (``render/approval.py``); nobody is pinged again.

    ``m.text`` like the prompt, not ``m.notice``: the outcome stays as readable as the question
    was (clients draw notices grey), and an edit notifies nobody (``.m.rule.suppress_edits``)."""
    line = outcome(approval, timeout, who)
    request = original.get(REQUEST_FIELD)
    if isinstance(request, dict) and all(
        isinstance(request.get(k), str) for k in ("body", "formatted_body")
    ):
        body, html = str(request["body"]), str(request["formatted_body"])
    elif isinstance(original.get("body"), str) and original["body"]:
        # A prompt from before REQUEST_FIELD: kept whole under the outcome.
        body = str(original["body"])
        shown = original.get("formatted_body")
        html = shown if isinstance(shown, str) else esc(body).replace("\n", "<br>")
    else:  # the prompt could not be read: say what the request was
        body = tool_summary(approval)
        html = esc(body)
    content: dict[str, Any] = {
        "msgtype": "m.text",
        "body": f"{line}\n{body}",
        "format": "org.matrix.custom.html",
        "formatted_body": f"<p><b>{_outcome_html(approval, timeout, who)}</b></p>{html}",
        "m.mentions": {},
    }
    return limit(content, _EDIT_BUDGET)


def already_decided(approval: Approval, timeout: float) -> str:
    what = one_line(outcome(approval, timeout), 200)
    return f"Already settled: {what}. Your decision was not used."
