"""The catalogue of Claude Code hook events: the one place that says what each event is.

One :class:`EventKind` per event, in the lifecycle order of the hooks reference
(https://code.claude.com/docs/en/hooks): its input model, whether and how ``install-hooks``
installs it, and its traits — what the responder may answer on it, what it tells the approvals
and the idle clock, whether mute hides it, whether history shows it, whether a backlog may fold
it. Every set of event names the bridge uses is derived from here; how an event looks in Matrix
is a renderer function registered against its kind (``render/registry.py``).

To add an event: one ``CATALOGUE.add(EventKind(...))`` below, plus its renderer (or
``own_renderer=False``). ``tests/unit/test_event_catalogue.py`` checks that the models, the
installer and the renderers agree with this file and that no other module lists event names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum

from claude_bridge.events import models as m

SHORT = 10
"""Seconds for events the bridge answers at once. Claude Code waits for every hook, so a hung
bridge costs the user at most this much per event."""
HELD = 600
"""PermissionRequest and Stop: the bridge may hold the answer until a human replies in Matrix."""


@dataclass(frozen=True)
class Install:
    """How ``install-hooks`` installs an event's hook."""

    matcher: bool
    """The event filters on a matcher: install ``"*"`` (everything)."""
    http: bool = True
    """Claude Code runs http hooks for it; otherwise the command shim is installed."""
    timeout: int = SHORT
    since: tuple[int, int, int] = (0, 0, 0)
    """The first Claude Code version that knows it (an unknown name once voided the whole
    settings file)."""


class Settles(Enum):
    """What a later event of the session tells a held PermissionRequest: that it was answered
    somewhere else (in the terminal), so the hold ends (``control/approvals.py``)."""

    SESSION = "session"
    """The session ended: every request it holds."""
    TURN = "turn"
    """The (sub)agent's turn moved on: that agent's requests."""
    SUBAGENT = "subagent"
    """The subagent finished: its requests."""
    CALL = "call"
    """The tool call finished or was denied: the request for that call."""


class Standing(Enum):
    """Where a session stands, as its room shows it (``room_state``)."""

    WORKING = "working"
    WAITING = "waiting_for_user"
    APPROVAL = "waiting_for_approval"
    ENDED = "ended"


@dataclass(frozen=True, eq=False)  # identity: ``kind is STOP``
class EventKind:
    name: str
    model: type[m.HookEvent] = m.HookEvent
    """The pydantic model its input is parsed into."""
    install: Install | None = None
    """None: ``install-hooks`` leaves it out (its hooks are not observers)."""
    own_renderer: bool = True
    """False: no renderer of its own; it shows as ``⚙️ <name>`` like an event this version does
    not know, and ``mirror.unknown_events`` switches it."""
    mirrored_by_default: bool = True
    """False: off unless ``mirror.events`` turns it on (it repeats others or says little)."""
    mid_turn: bool = False
    """Its answer can hand queued Matrix messages to Claude (``additionalContext``)."""
    stoppable: bool = False
    """Its answer can carry a pending ``!claude stop`` (``"continue": false``)."""
    idle_after: bool = False
    """After it the session sits at its prompt, not working on a turn (the waiter's clock)."""
    shows_activity: bool = True
    """False: it comes while the session is idle as well, so it says nothing about being busy."""
    settles_approvals: Settles | None = None
    """Which held permission requests it shows answered elsewhere (not the same events as
    ``idle_after``: a new prompt settles a request, a session start does not)."""
    muted: bool = False
    """``!claude mute`` hides it: tool-call lines and their output (approvals stay)."""
    in_history: bool = True
    """False: history and exports leave it out, since it repeats another event."""
    foldable: bool = True
    """A room far behind may fold it (stored, not sent); False for what a person must see."""
    follows_call: bool = False
    """Output of a tool call: folded along with the calls before it."""
    echoes_approval: str | None = None
    """The ``notification_type`` with which an event of this kind only repeats a pending
    permission request (Claude Code's "Claude needs your permission", sent when its dialog has
    waited a few seconds): it is folded into the request's prompt, which pinged already."""
    standing: Standing | None = None
    """Where the session stands after it; None: it does not say (``room_state`` reads a
    Notification's type and a SessionStart's source besides)."""


UNKNOWN = EventKind("")
"""The traits assumed for a name the catalogue does not list (Claude Code adds events)."""


class Catalogue:
    """Event kinds by name, in the order added; a second kind under a name already taken is
    refused."""

    def __init__(self) -> None:
        self._kinds: dict[str, EventKind] = {}

    def add(self, kind: EventKind) -> EventKind:
        if not kind.name or kind.name in self._kinds:
            raise ValueError(f"event kind {kind.name!r} is empty or already in the catalogue")
        self._kinds[kind.name] = kind
        return kind

    def get(self, name: object) -> EventKind | None:
        return self._kinds.get(name) if isinstance(name, str) else None

    def __iter__(self) -> Iterator[EventKind]:
        return iter(self._kinds.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._kinds

    def names(self, where: Callable[[EventKind], bool]) -> frozenset[str]:
        return frozenset(k.name for k in self if where(k))


CATALOGUE = Catalogue()
_add = CATALOGUE.add


def kind_of(name: object) -> EventKind:
    """``name``'s kind, or :data:`UNKNOWN` for a name the catalogue does not list."""
    return CATALOGUE.get(name) or UNKNOWN


SESSION_START = _add(
    EventKind(
        "SessionStart",
        m.SessionStart,
        # "supports command and mcp_tool hooks", not http
        Install(matcher=True, http=False),
        idle_after=True,
        foldable=False,
        standing=Standing.WAITING,
    )
)
SETUP = _add(EventKind("Setup", install=Install(matcher=True, http=False)))
INSTRUCTIONS_LOADED = _add(  # fires often and says little
    EventKind("InstructionsLoaded", install=Install(matcher=True), mirrored_by_default=False)
)
USER_PROMPT_SUBMIT = _add(
    EventKind(
        "UserPromptSubmit",
        m.UserPromptSubmit,
        Install(matcher=False),
        mid_turn=True,
        settles_approvals=Settles.TURN,
        foldable=False,
        standing=Standing.WORKING,
    )
)
USER_PROMPT_EXPANSION = _add(
    EventKind("UserPromptExpansion", install=Install(matcher=True), own_renderer=False)
)
PRE_TOOL_USE = _add(
    EventKind(
        "PreToolUse",
        m.PreToolUse,
        Install(matcher=True),
        mid_turn=True,
        stoppable=True,
        muted=True,
        standing=Standing.WORKING,
    )
)
PERMISSION_REQUEST = _add(
    EventKind(
        "PermissionRequest",
        m.PermissionRequest,
        Install(matcher=True, timeout=HELD),
        stoppable=True,
        foldable=False,
        standing=Standing.APPROVAL,
    )
)
PERMISSION_DENIED = _add(
    EventKind(
        "PermissionDenied",
        install=Install(matcher=True),
        settles_approvals=Settles.CALL,
        muted=True,
        foldable=False,
        standing=Standing.WORKING,
    )
)
POST_TOOL_USE = _add(
    EventKind(
        "PostToolUse",
        m.PostToolUse,
        Install(matcher=True),
        mid_turn=True,
        stoppable=True,
        settles_approvals=Settles.CALL,
        muted=True,
        in_history=False,  # repeats its call
        follows_call=True,
        standing=Standing.WORKING,
    )
)
POST_TOOL_USE_FAILURE = _add(
    EventKind(
        "PostToolUseFailure",
        m.PostToolUseFailure,
        Install(matcher=True),
        mid_turn=True,
        stoppable=True,
        settles_approvals=Settles.CALL,
        muted=True,
        follows_call=True,
        standing=Standing.WORKING,
    )
)
POST_TOOL_BATCH = _add(
    EventKind(
        "PostToolBatch",
        m.PostToolBatch,
        Install(matcher=False),
        mirrored_by_default=False,  # repeats the tool calls already shown
        stoppable=True,
        muted=True,
        in_history=False,
        follows_call=True,
        standing=Standing.WORKING,
    )
)
NOTIFICATION = _add(
    EventKind(
        "Notification",
        m.Notification,
        Install(matcher=True),
        shows_activity=False,
        foldable=False,
        echoes_approval="permission_prompt",
    )
)
MESSAGE_DISPLAY = _add(
    EventKind(
        "MessageDisplay",
        m.MessageDisplay,
        # Claude Code holds each displayed batch of text until the hook returns.
        Install(matcher=False, timeout=5),
        shows_activity=False,
        in_history=False,  # streamed chunks repeat the final reply
        foldable=False,
        standing=Standing.WORKING,
    )
)
SUBAGENT_START = _add(
    EventKind("SubagentStart", m.SubagentStart, Install(matcher=True), standing=Standing.WORKING)
)
SUBAGENT_STOP = _add(
    EventKind(
        "SubagentStop",
        m.SubagentStop,
        Install(matcher=True),
        settles_approvals=Settles.SUBAGENT,
        foldable=False,
    )
)
TASK_CREATED = _add(EventKind("TaskCreated", install=Install(matcher=False)))
TASK_COMPLETED = _add(EventKind("TaskCompleted", install=Install(matcher=False)))
STOP = _add(
    EventKind(
        "Stop",
        m.Stop,
        Install(matcher=False, timeout=HELD),
        stoppable=True,
        idle_after=True,
        settles_approvals=Settles.TURN,
        foldable=False,
        standing=Standing.WAITING,
    )
)
STOP_FAILURE = _add(
    EventKind(
        "StopFailure",
        m.StopFailure,
        Install(matcher=True),
        idle_after=True,
        settles_approvals=Settles.TURN,
        foldable=False,
        standing=Standing.WAITING,
    )
)
TEAMMATE_IDLE = _add(EventKind("TeammateIdle", install=Install(matcher=False)))
CONFIG_CHANGE = _add(EventKind("ConfigChange", install=Install(matcher=True)))
CWD_CHANGED = _add(EventKind("CwdChanged", install=Install(matcher=False)))
# Not installed: the matcher is the list of files to watch; there is no "all files". Off by
# default: it fires often and says little.
FILE_CHANGED = _add(EventKind("FileChanged", mirrored_by_default=False))
DIRECTORY_ADDED = _add(
    EventKind(
        "DirectoryAdded", install=Install(matcher=True, since=(2, 1, 219)), own_renderer=False
    )
)
# Not installed: a WorktreeCreate hook *replaces* git's worktree creation and must print a path;
# WorktreeRemove is its pair (git worktrees clean up by themselves).
WORKTREE_CREATE = _add(EventKind("WorktreeCreate"))
WORKTREE_REMOVE = _add(EventKind("WorktreeRemove"))
PRE_COMPACT = _add(EventKind("PreCompact", m.PreCompact, Install(matcher=True), foldable=False))
POST_COMPACT = _add(EventKind("PostCompact", m.PostCompact, Install(matcher=True), foldable=False))
PRE_MODEL_SWITCH = _add(
    EventKind(
        "PreModelSwitch", install=Install(matcher=True, since=(2, 1, 251)), own_renderer=False
    )
)
POST_MODEL_SWITCH = _add(
    EventKind(
        "PostModelSwitch", install=Install(matcher=True, since=(2, 1, 251)), own_renderer=False
    )
)
ELICITATION = _add(  # an MCP server asking a person
    EventKind("Elicitation", install=Install(matcher=True), foldable=False)
)
ELICITATION_RESULT = _add(EventKind("ElicitationResult", install=Install(matcher=True)))
SESSION_END = _add(
    EventKind(
        "SessionEnd",
        m.SessionEnd,
        # SessionEnd hooks share a 1.5 s budget unless a hook's timeout raises it (max 60 s).
        Install(matcher=True, timeout=5),
        idle_after=True,
        settles_approvals=Settles.SESSION,
        foldable=False,
        standing=Standing.ENDED,
    )
)

# Derived sets, for code that hands names to SQL.
NOT_IN_HISTORY = CATALOGUE.names(lambda k: not k.in_history)
NEVER_FOLDED = CATALOGUE.names(lambda k: not k.foldable)
