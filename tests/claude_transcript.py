"""Writing a session transcript the way Claude Code does, for catch-up tests and benchmarks.

Lines follow ``tests/fixtures/transcript.jsonl`` (the shape of Claude Code 2.1's
``~/.claude/projects/<project>/<session>.jsonl``): every entry carries the session metadata, an
assistant message is written one content block per line, and a tool result is a ``user`` entry.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class TranscriptWriter:
    def __init__(
        self, path: Path, session_id: str, cwd: str = "/home/dev/projects/demo-app"
    ) -> None:
        self.path = path
        self.session_id = session_id
        self.cwd = cwd
        self.parent: str | None = None
        path.parent.mkdir(parents=True, exist_ok=True)

    def _write(self, kind: str, message: dict[str, Any], **extra: Any) -> str:
        entry_id = str(uuid.uuid4())
        entry = {
            "parentUuid": self.parent,
            "isSidechain": False,
            "userType": "external",
            "cwd": self.cwd,
            "sessionId": self.session_id,
            "version": "2.1.197",
            "gitBranch": "main",
            "type": kind,
            "message": message,
            "uuid": entry_id,
            "timestamp": datetime.now(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            **extra,
        }
        with self.path.open("a") as f:
            f.write(json.dumps(entry) + "\n")
        self.parent = entry_id
        return entry_id

    def _assistant(self, block: dict[str, Any]) -> str:
        message = {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
                   "model": "claude-opus-4-8", "content": [block], "stop_reason": None,
                   "usage": {"input_tokens": 4, "output_tokens": 20}}  # fmt: skip
        return self._write("assistant", message, requestId=f"req_{uuid.uuid4().hex[:24]}")

    def prompt(self, text: str) -> None:
        self._write("user", {"role": "user", "content": text})

    def thinking(self, text: str) -> None:
        self._assistant({"type": "thinking", "thinking": text, "signature": "sig"})

    def text(self, text: str) -> None:
        self._assistant({"type": "text", "text": text})

    def tool_use(self, name: str, tool_input: dict[str, Any]) -> str:
        use_id = f"toolu_{uuid.uuid4().hex[:24]}"
        self._assistant({"type": "tool_use", "id": use_id, "name": name, "input": tool_input})
        return use_id

    def tool_result(self, use_id: str, text: str, *, is_error: bool = False) -> None:
        block = {
            "tool_use_id": use_id,
            "type": "tool_result",
            "content": text,
            "is_error": is_error,
        }
        self._write("user", {"role": "user", "content": [block]}, toolUseResult=text)

    def image_result(self, use_id: str, data: str, media_type: str = "image/png") -> None:
        """A Read of an image, as the CLI (2.1.332) writes it: one image content block."""
        source = {"type": "base64", "data": data, "media_type": media_type}
        block = {"tool_use_id": use_id, "type": "tool_result",
                 "content": [{"type": "image", "source": source}]}  # fmt: skip
        result = {"type": "image", "file": {"base64": data, "type": media_type}}
        self._write("user", {"role": "user", "content": [block]}, toolUseResult=result)
