"""The ``hooks`` section: the hook-ingest listener, the hook tokens and their limits."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, field_validator, model_validator

from claude_bridge.config.sections.base import Section
from claude_bridge.config.sections.catchup import CatchupConfig


class TokenRole(StrEnum):
    HOST = "host"
    SHARED = "shared"
    ADMIN = "admin"


class HookToken(Section):
    """One hook token's settings; a plain string in ``hooks.tokens`` is a host token with the
    defaults below."""

    secret: str = Field(
        min_length=1,
        description="What the host sends as 'Authorization: Bearer <secret>'.",
    )
    role: TokenRole = Field(
        TokenRole.HOST,
        description="host: only its own sessions, on every path (hooks, answers, waiter, threads "
        "API, MCP). shared: also reads every thread and hands off into any thread through the "
        "threads API / MCP. admin: shared, and may also post hook events into other tokens' "
        "sessions (their answers still go to the owning token only).",
    )
    local: bool = Field(
        False,
        description="The host using this token is the bridge's own machine: only such a token's "
        "hooks may make the bridge read a session transcript from its disk (catch-up).",
    )
    max_threads: int = Field(
        0,
        ge=0,
        description="Most threads this token may own in total; a new session beyond it is "
        "answered 403. 0: no limit.",
    )
    max_held_approvals: int = Field(
        20,
        ge=0,
        description="Most permission requests of this token held open at once waiting for an "
        "operator; more are answered 429 (the shim spools them). 0: no limit.",
    )
    renamed_from: list[str] = Field(
        default_factory=list,
        description="Former names of this token. At start-up the threads those names own are "
        "given to this name, with their queued messages; a thread whose owner is no configured "
        "token is logged (and refused on every path) until its owner is named here.",
    )


class HooksConfig(Section):
    listen: str = Field(
        "127.0.0.1:29341",
        description="host:port of the hook-ingest server (Claude Code → bridge). Separate from the "
        "appservice listener so each can be exposed to different networks.",
    )
    tokens: dict[str, str | HookToken] = Field(
        default_factory=dict,
        description="Hook tokens, name → secret, or name → {secret, role, local, max_threads, "
        "max_held_approvals, renamed_from} (below). Give each Claude Code host its own; "
        "they send it as 'Authorization: Bearer <secret>'. A thread belongs to the token that "
        "opened it (by name).",
    )
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest hook request body accepted (larger → 413)."
    )
    new_threads_per_minute: int = Field(
        60,
        ge=0,
        description="New sessions (threads) one hook token may open per minute; more are answered "
        "429 with Retry-After (the shim spools them). Events of existing threads are not "
        "limited. 0: no limit.",
    )
    catchup: CatchupConfig = Field(
        default_factory=CatchupConfig,
        description="Filling a room from the session transcript after events were lost.",
    )
    max_held_connections: int = Field(
        0,
        ge=0,
        description="Most connections held open at once (background-waiter long-polls, permission "
        "requests and Stop hooks waiting); more are answered 503 with Retry-After. 0: as many as "
        "the file-descriptor limit allows less a reserve (the bridge raises its soft limit to the "
        "hard one at start-up and logs the figure).",
    )
    group_commit: bool = Field(
        True,
        description="On Postgres, hook events that arrive together are stored in one commit (each "
        "is still acknowledged only after it is committed). Off: one commit per event. No "
        "effect on SQLite.",
    )

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be host:port, e.g. 127.0.0.1:29341")
        return v

    @model_validator(mode="after")
    def _tokens_unambiguous(self) -> HooksConfig:
        tokens = self.hook_tokens()
        seen: dict[str, str] = {}
        for name, token in tokens.items():
            if token.secret in seen:
                raise ValueError(f"tokens {seen[token.secret]!r} and {name!r} have one secret")
            seen[token.secret] = name
        former: dict[str, str] = {}
        for name, token in tokens.items():
            for old in token.renamed_from:
                if old in tokens:
                    raise ValueError(f"{name}.renamed_from: {old!r} is a configured token")
                if old in former:
                    raise ValueError(f"{old!r} is in renamed_from of {former[old]!r} and {name!r}")
                former[old] = name
        return self

    def hook_tokens(self) -> dict[str, HookToken]:
        """Every token with its settings (a plain secret gets the defaults)."""
        return {
            name: HookToken(secret=value) if isinstance(value, str) else value
            for name, value in self.tokens.items()
        }

    def secrets(self) -> dict[str, str]:
        """Token name → secret."""
        return {name: token.secret for name, token in self.hook_tokens().items()}

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])
