"""Hook inputs for the benchmarks, built from the captured payloads in shared/claude-code.

Every event carries a *marker* (``bm<run>-<n>-pre`` …) that shows up in the body of the Matrix
message it renders to, so the observer can tell when exactly that event reached the room.
Bodies are serialised before timing starts: the client's JSON work is not the bridge's.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import secrets
import uuid
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PAYLOADS = Path(
    os.environ.get("CLAUDE_BRIDGE_HOOK_PAYLOADS", REPO.parent / "shared/claude-code/hook-payloads")
)
MARKER = re.compile(r"bm[0-9a-z]{6}-[0-9a-z]+-[0-9]+-(?:pre|out|say)")
_runs = itertools.count()


@cache
def captured(name: str) -> dict[str, Any]:
    path = PAYLOADS / f"{name}.json"
    if path.exists():
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    # The captured payloads live outside the repo; keep going with the documented shape.
    base: dict[str, Any] = {
        "session_id": "00000000-0000-0000-0000-000000000000",
        "transcript_path": "/tmp/t.jsonl",
        "cwd": "/home/dev/projects/demo-app",
        "hook_event_name": name,
    }
    return base


def new_tag() -> str:
    """A short per-benchmark prefix so markers never collide across benchmarks or runs."""
    return f"bm{secrets.token_hex(3)}-{next(_runs)}"


class Session:
    """One fake Claude Code session: its id and the hook inputs it would send."""

    def __init__(self, tag: str, *, cwd: str = "/home/dev/projects/bench-app") -> None:
        self.session_id = str(uuid.uuid4())
        self.tag = tag
        self.cwd = cwd
        self.prompt_id = str(uuid.uuid4())
        self._n = itertools.count()

    @property
    def alias_localpart(self) -> str:
        return f"claude-thread-{self.session_id}"

    def _event(self, name: str, **fields: Any) -> dict[str, Any]:
        data = copy.deepcopy(captured(name))
        data.update(
            session_id=self.session_id,
            cwd=self.cwd,
            transcript_path=f"/home/dev/.claude/projects/bench/{self.session_id}.jsonl",
        )
        if "prompt_id" in data or name not in ("SessionStart", "SessionEnd"):
            data["prompt_id"] = self.prompt_id
        data.update(fields)
        return data

    def marker(self, n: int, kind: str) -> str:
        return f"{self.tag}-{n}-{kind}"

    def session_start(self) -> bytes:
        return _dump(self._event("SessionStart", source="startup"))

    def prompt(self, text: str = "run the benchmark") -> bytes:
        return _dump(self._event("UserPromptSubmit", prompt=text))

    def pre(self, n: int | None = None) -> tuple[bytes, str]:
        """A PreToolUse (one line in the room); returns (body, marker)."""
        n = next(self._n) if n is None else n
        mark = self.marker(n, "pre")
        data = self._event(
            "PreToolUse",
            tool_name="Bash",
            tool_input={"command": f"echo {mark}", "description": "benchmark step"},
            tool_use_id=f"toolu_{self.tag}_{n}",
        )
        return _dump(data), mark

    def post(self, n: int) -> tuple[bytes, str]:
        """The PostToolUse of call ``n`` (its output, in the line's thread); (body, marker)."""
        mark = self.marker(n, "out")
        data = self._event(
            "PostToolUse",
            tool_name="Bash",
            tool_input={
                "command": f"echo {self.marker(n, 'pre')}",
                "description": "benchmark step",
            },
            tool_response={
                "stdout": mark,
                "stderr": "",
                "interrupted": False,
                "isImage": False,
                "noOutputExpected": False,
            },
            tool_use_id=f"toolu_{self.tag}_{n}",
            duration_ms=3,
        )
        return _dump(data), mark

    def pair(self) -> list[tuple[bytes, str]]:
        """A tool call: PreToolUse then PostToolUse (two messages)."""
        n = next(self._n)
        return [self.pre(n), self.post(n)]

    def permission_request(self, n: int) -> tuple[bytes, str]:
        """A PermissionRequest for call ``n``: held by the bridge until someone decides."""
        mark = self.marker(n, "ask")
        data = self._event(
            "PermissionRequest",
            tool_name="Bash",
            tool_input={"command": f"rm -rf build/{mark}", "description": "benchmark question"},
            permission_suggestions=[],
        )
        return _dump(data), mark

    def batch_event(self) -> bytes:
        """PostToolBatch: stored and routed like any event, but not mirrored by default (it
        repeats calls already shown), so it costs the homeserver nothing."""
        return _dump(self._event("PostToolBatch"))


def _dump(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()
