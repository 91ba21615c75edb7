"""A ``type`` job's files: fetched with the runner's token from an in-test stand-in of the
bridge's attachment route and written under the root before the text is typed; a path outside
the root, a wrong token's 404 and a failed fetch are named in the typed text instead."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web

from claude_bridge import host_files
from claude_bridge.devenv.synapse import free_port
from claude_bridge.runner.config import RunnerConfigError, _files_root
from claude_bridge.runner.files import FileReceiver, files_header
from claude_bridge.runner.sessions import Live

SID = "0b7c3a52-4a3e-4a9f-9d55-0a8f3b3b9e01"
TOKEN = "secret-token-1234567890"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


@pytest.fixture
async def bridge() -> AsyncIterator[tuple[str, list[str]]]:
    asked: list[str] = []

    async def attachment(request: web.Request) -> web.Response:
        asked.append(request.path)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.Response(status=404)
        if request.match_info["id"] == "12":
            return web.Response(body=PNG)
        return web.Response(status=500)

    app = web.Application()
    app.router.add_get("/claude/v1/sessions/{sid}/attachments/{id}", attachment)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", asked
    finally:
        await runner.cleanup()


def type_job(root: Path, *entries: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "j1",
        "kind": "type",
        "session_id": SID,
        "text": "look at it",
        "files": list(entries),
    }


def entry(root: Path, message_id: int, name: str) -> dict[str, Any]:
    path = host_files.host_path(str(root), SID, message_id, name)
    return {"id": message_id, "name": name, "path": path}


LIVE = cast(Live, None)


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


async def test_the_file_is_written_before_typing_and_the_text_stays(
    bridge: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, asked = bridge
    root = tmp_path / "attachments"
    got = await FileReceiver(url, TOKEN, str(root))(type_job(root, entry(root, 12, "a.png")), LIVE)
    assert got is None  # nothing to add: the job's text is typed as it is
    written = host_files.host_path(str(root), SID, 12, "a.png")
    assert read(written) == PNG
    assert stat.S_IMODE(os.stat(written).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(written)).st_mode) == 0o700
    assert asked == [f"/claude/v1/sessions/{SID}/attachments/12"]


async def test_failures_and_paths_outside_the_root_are_named_in_the_typed_text(
    bridge: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, asked = bridge
    root = tmp_path / "attachments"
    outside = {"id": 12, "name": "a.png", "path": str(tmp_path / "evil" / "12-a.png")}
    job = type_job(root, outside, entry(root, 13, "b.txt"))
    text = await FileReceiver(url, TOKEN, str(root))(job, LIVE)
    assert text is not None and text.startswith("look at it\n\n[claude-bridge: ")
    assert "evil" in text and "500" in text
    assert os.listdir(tmp_path) == []
    assert asked == [f"/claude/v1/sessions/{SID}/attachments/13"]  # the outside one: no fetch
    # Another token (the bridge serves only the owner's files): a 404, said in the text.
    other = await FileReceiver(url, "another-token", str(root))(
        type_job(root, entry(root, 12, "a.png")), LIVE
    )
    assert other is not None and "404" in other
    assert os.listdir(tmp_path) == []  # nothing written, not even a folder


def test_the_header_and_the_configured_root(tmp_path: Path) -> None:
    assert files_header("/home/a/.cache/claude-bridge/attachments") == {
        "X-Claude-Bridge-Files": "/home/a/.cache/claude-bridge/attachments"
    }
    assert files_header(None) == {} and files_header("relative") == {}
    assert _files_root("") is None  # carries no files: the bridge keeps them queued
    assert _files_root(str(tmp_path / "x")) == str(tmp_path / "x")
    assert str(_files_root(None)).endswith("/claude-bridge/attachments")
    with pytest.raises(RunnerConfigError):
        _files_root(3)


async def test_the_runner_prunes_its_files_root_at_start(tmp_path: Path) -> None:
    """``prune_forever`` (started by ``run_runner`` with a files root) deletes at once the
    session folders untouched past the retention, and keeps the fresh ones."""
    import asyncio

    from claude_bridge.runner.files import prune_forever
    from tests.unit.runner.conftest import eventually

    root = str(tmp_path)
    old = host_files.host_path(root, "old", 1, "a")
    fresh = host_files.host_path(root, "fresh", 2, "b")
    for path in (old, fresh):
        host_files.write_file(root, path, b"x")
    past = os.stat(old).st_mtime - 8 * 86400
    os.utime(os.path.dirname(old), (past, past))

    async def gone() -> bool:
        return not await asyncio.to_thread(os.path.exists, os.path.dirname(old))

    task = asyncio.create_task(prune_forever(root, host_files.keep_seconds({})))
    try:
        await eventually(gone)
        assert await asyncio.to_thread(os.path.exists, fresh)
    finally:
        task.cancel()
