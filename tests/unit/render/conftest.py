"""Fixtures for the renderer tests."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import pytest

from claude_bridge.render import OutboundMessage

from .helpers import SNAPSHOTS, serialise


@pytest.fixture
def snapshot() -> Callable[[str, list[OutboundMessage]], None]:
    """Compare rendered messages with ``snapshots/<name>.json``.

    A missing or different snapshot fails, unless ``UPDATE_SNAPSHOTS=1``: then it is (re)written
    and the test passes; review the diff before committing.
    """

    def check(name: str, messages: list[OutboundMessage]) -> None:
        path = SNAPSHOTS / f"{name}.json"
        actual = serialise(messages)
        text = json.dumps(actual, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
        if os.environ.get("UPDATE_SNAPSHOTS") == "1":
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
            return
        if not path.exists():
            pytest.fail(f"snapshot {path.name} is missing; run with UPDATE_SNAPSHOTS=1 to write it")
        expected = json.loads(path.read_text(encoding="utf-8"))
        assert actual == expected, f"rendering differs from {path.name}"

    return check
