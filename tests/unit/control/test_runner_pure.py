"""Pure parts of the runner commands (issue 15): who may launch, tmux names, pane tails."""

from __future__ import annotations

from claude_bridge.config import PermissionLevel
from claude_bridge.control.runner_rooms import fence, tmux_name
from claude_bridge.permissions import Permissions

ADMIN, OP, VIEW = PermissionLevel.ADMIN, PermissionLevel.OPERATOR, PermissionLevel.VIEWER


def test_launching_needs_admin_or_a_grant_for_the_project_and_operator() -> None:
    perms = Permissions(
        {"@root:x.org": ADMIN, "@op:x.org": OP, "x.org": OP, "@viewer:x.org": VIEW, "*": VIEW},
        {"@op:x.org": ["api"], "x.org": ["*"], "@viewer:x.org": ["api"], "*": ["api"]},
    )
    assert perms.may_launch("@root:x.org", "anything")
    assert perms.may_launch("@op:x.org", "api")
    assert not perms.may_launch("@op:x.org", "web")  # a user's own rule beats the domain's
    assert perms.may_launch("@someone:x.org", "web")  # the domain's grant: every project
    assert not perms.may_launch("@viewer:x.org", "api")  # a grant does not lift a viewer
    assert not perms.may_launch("@stranger:y.org", "api")  # '*' viewers, granted: still no
    assert not perms.may_launch("@op:x.org", None)
    assert not Permissions({"@op:x.org": OP}).may_launch("@op:x.org", "api")  # no grants


def test_tmux_names_follow_the_contract() -> None:
    sid = "1a2b3c4d-0000-4000-8000-000000000000"
    assert tmux_name("api", sid) == "claude-api-1a2b3c4d"
    assert tmux_name("web.v2", sid) == "claude-web_v2-1a2b3c4d"  # tmux turns '.' into '_'


def test_a_pane_tail_cannot_close_its_code_block() -> None:
    assert fence("ok") == "```\nok\n```"
    tricky = "a\n```\nb ````"
    fenced = fence(tricky)
    ticks = fenced.split("\n", 1)[0]
    assert ticks == "`````" and fenced.endswith("\n" + ticks)
