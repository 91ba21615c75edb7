"""Operators' files reach Claude as local paths, end to end on real Synapse (SQLite and Postgres).

Files are uploaded through Synapse's media repository by real Matrix users and posted as
``m.image``/``m.file``; the bridge downloads them through the authenticated media API. Claude
Code's side is the real command shim (``claude-bridge-hook``, as ``--durable`` runs it, and its
background waiter ``wait``) in a subprocess with its own ``HOME``, or the hook poster for plain
``http`` hooks.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from claude_bridge.app import Bridge
from claude_bridge.control import file_carrier
from claude_bridge.matrix import media
from claude_bridge.matrix.client import MatrixError
from claude_bridge.store.database import now_ms
from tests.e2e.conftest import HOOK_TOKEN, HookPoster, Stack, StartBridge, hook_payload
from tests.e2e.test_control import (
    command,
    context_of,
    delivered_mark,
    open_thread,
    post_tool_use,
    processed,
    queued,
)
from tests.e2e.test_foundation import _until
from tests.matrix_client import MatrixTestClient

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
OTHER_TOKEN = "other-host-secret"


def png(width: int = 3, height: int = 2, *, noise: bool = False) -> bytes:
    """A real PNG (red pixels, or random ones that don't compress), as a phone's screenshot."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    row = (lambda: os.urandom(3 * width)) if noise else (lambda: b"\xff\x00\x00" * width)
    raw = b"".join(b"\x00" + row() for _ in range(height))
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


async def upload(user: MatrixTestClient, data: bytes, name: str, mimetype: str) -> str:
    """Upload through Synapse's media repository; the ``mxc://`` URL."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{user.base_url}/_matrix/media/v3/upload",
            params={"filename": name},
            data=data,
            headers={"Authorization": f"Bearer {user.access_token}", "Content-Type": mimetype},
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["content_uri"])


async def send_file(
    user: MatrixTestClient,
    room: str,
    data: bytes,
    name: str,
    mimetype: str = "image/png",
    *,
    msgtype: str = "m.image",
    caption: str | None = None,
) -> str:
    url = await upload(user, data, name, mimetype)
    content: dict[str, Any] = {
        "msgtype": msgtype,
        "body": caption if caption is not None else name,
        "url": url,
        "info": {"mimetype": mimetype, "size": len(data)},
    }
    if caption is not None:
        content["filename"] = name
    return await user.send_event(room, "m.room.message", content)


async def reply_to(
    user: MatrixTestClient,
    room: str,
    ghost: str,
    event_id: str,
    where: Callable[[dict[str, Any]], bool] = lambda _: True,
) -> str:
    """The body of the ghost's (first, or first ``where``) reply to ``event_id``."""
    reply = await user.wait_for(
        lambda e: (
            e["sender"] == ghost
            and e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
            == event_id
            and where(e["content"])
        ),
        room_id=room,
    )
    return str(reply["content"]["body"])


def shim_env(home: Path, token: str = HOOK_TOKEN) -> dict[str, str]:
    return {
        "CLAUDE_BRIDGE_TOKEN": token,
        "PYTHONPATH": str(REPO),
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
    }


async def run_shim(
    stack: Stack, home: Path, args: list[str], payload: dict[str, Any]
) -> tuple[int, bytes, bytes]:
    """``claude-bridge-hook`` as Claude Code runs it: the hook input on stdin."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "claude_bridge.shim",
        "--url", f"http://{stack.config['hooks']['listen']}", "--timeout", "60", *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=shim_env(home),
        cwd=REPO,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(json.dumps(payload).encode()), 60)
    assert proc.returncode is not None
    return proc.returncode, out, err


async def idle_with_waiter(
    stack: Stack, bridge: Bridge, hooks: HookPoster, home: Path, session: str
) -> asyncio.Task[tuple[int, bytes, bytes]]:
    """The session's turn ended and its background waiter (the real shim) long-polls."""
    assert (await hooks.post(hook_payload("Stop", session)))[1] == {}  # idle
    waiting = asyncio.create_task(run_shim(stack, home, ["wait"], hook_payload("Stop", session)))
    await _until(
        lambda: _true(bridge.control.waiter.waiting(session.lower())), "the waiter's long-poll"
    )
    return waiting


def attached_path(text: str, sender: str = "@alice:localhost") -> Path:
    """The path in the bridge's line announcing a file."""
    start = f"Message from {sender} via Matrix: attached "
    head = next((line for line in text.splitlines() if line.startswith(start)), None)
    assert head is not None, text
    return Path(head.rsplit("): ", 1)[1])


def assert_private(path: Path) -> None:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


async def test_an_operators_png_reaches_the_durable_shim_as_a_path_with_the_same_bytes(
    stack: Stack, bridge: Bridge, hooks: HookPoster, tmp_path: Path
) -> None:
    session, room, ghost = await open_thread(stack, bridge, hooks)
    alice = stack.users["alice"]
    image = png()
    before = await alice.send_text(room, "look at this")
    sent = await send_file(alice, room, image, "screen shot.png", caption="the red bar")
    after = await alice.send_text(room, "and fix it")
    await queued(bridge, session.lower(), 3)

    code, out, err = await run_shim(stack, tmp_path, [], post_tool_use(session))
    assert code == 0, err
    answer = json.loads(out)
    assert "claudeBridgeFiles" not in answer  # the shim consumed it: Claude Code never sees it
    text = context_of(answer)
    root = tmp_path / ".cache" / "claude-bridge" / "attachments"
    path = attached_path(text)
    assert path.parent == root / session
    assert path.name.endswith("-screen_shot.png")
    assert text == (
        "Message from @alice:localhost via Matrix:\n> look at this\n\n"
        "Message from @alice:localhost via Matrix: attached screen_shot.png "
        f"(image/png, {len(image)} B): "
        f"{path}\n> the red bar\n\n"
        "Message from @alice:localhost via Matrix:\n> and fix it"
    )
    assert path.read_bytes() == image
    assert_private(path)
    for event_id in (before, sent, after):  # the file's ✓ only once the host fetched it
        await delivered_mark(alice, room, ghost, event_id)
    fetched = await bridge.db.fetchval(
        "SELECT file_fetched_at FROM session_message WHERE event_id=$1", sent
    )
    assert fetched is not None

    # Only the owning token fetches a session's files.
    message_id = int(path.name.split("-", 1)[0])
    url = f"http://{stack.config['hooks']['listen']}/claude/v1/sessions/{session}/attachments/"
    async with aiohttp.ClientSession() as http:
        for token, status in ((None, 401), ("wrong", 401), (HOOK_TOKEN, 200)):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with http.get(f"{url}{message_id}", headers=headers) as resp:
                assert resp.status == status
                if status == 200:
                    assert await resp.read() == image
        async with http.get(
            f"{url}{message_id + 1000}", headers={"Authorization": f"Bearer {HOOK_TOKEN}"}
        ) as resp:
            assert resp.status == 404


async def test_another_token_cannot_fetch_a_sessions_file(
    stack: Stack, start_bridge: StartBridge, tmp_path: Path
) -> None:
    tokens = {"laptop": HOOK_TOKEN, "desktop": OTHER_TOKEN}
    bridge = await start_bridge(hooks={"tokens": tokens})
    hooks = HookPoster(f"http://{stack.config['hooks']['listen']}")
    try:
        session, room, _ = await open_thread(stack, bridge, hooks)
        alice = stack.users["alice"]
        await send_file(alice, room, png(), "secret.png")
        await queued(bridge, session.lower(), 1)
        code, out, _ = await run_shim(stack, tmp_path, [], post_tool_use(session))
        assert code == 0
        path = attached_path(context_of(json.loads(out)))
        message_id = int(path.name.split("-", 1)[0])
        url = (
            f"http://{stack.config['hooks']['listen']}/claude/v1/sessions/{session}/"
            f"attachments/{message_id}"
        )
        async with (
            aiohttp.ClientSession() as http,
            http.get(url, headers={"Authorization": f"Bearer {OTHER_TOKEN}"}) as resp,
        ):
            assert resp.status == 403
            assert "another hook token" in (await resp.json())["error"]
        # Nor does another token's hook answer ever carry the file.
        status, answer = await hooks.post(post_tool_use(session), token=OTHER_TOKEN)
        assert status == 403 or answer == {}
    finally:
        await hooks.close()


async def test_the_background_waiter_writes_the_file_before_waking_the_session(
    stack: Stack, bridge: Bridge, hooks: HookPoster, tmp_path: Path
) -> None:
    session, room, ghost = await open_thread(stack, bridge, hooks)
    alice = stack.users["alice"]
    waiting = await idle_with_waiter(stack, bridge, hooks, tmp_path, session)
    data = b"%PDF-1.4 not much of a pdf\n" * 40
    sent = await send_file(alice, room, data, "report.pdf", "application/pdf", msgtype="m.file")
    code, _, err = await waiting
    assert code == 2, err  # asyncRewake: wake the session
    text = err.decode()
    path = attached_path(text)
    assert text.startswith("Message from @alice:localhost via Matrix: attached report.pdf ")
    assert "(application/pdf, 1.1 KB)" in text
    assert path.read_bytes() == data
    assert_private(path)
    await delivered_mark(alice, room, ghost, sent)


async def _true(value: bool) -> bool:
    return value


async def test_viewers_files_never_arrive(
    stack: Stack, bridge: Bridge, hooks: HookPoster, tmp_path: Path
) -> None:
    session, room, ghost = await open_thread(stack, bridge, hooks)
    admin, victor = stack.users["admin"], stack.users["victor"]
    await command(admin, room, ghost, "!claude invite @victor:localhost viewer")
    await victor.wait_for_invite(room)
    await victor.join(room)
    sent = await send_file(victor, room, png(), "viewer.png", caption="!claude stop")
    await processed(bridge, sent)
    code, out, _ = await run_shim(stack, tmp_path, [], post_tool_use(session))
    assert code == 0 and json.loads(out) == {}
    assert await bridge.db.fetchval("SELECT COUNT(*) FROM session_message") == 0
    assert not (tmp_path / ".cache" / "claude-bridge" / "attachments").exists()
    assert not (await bridge.control.parts.controls.get(session.lower())).stop_requested


async def test_an_oversized_file_is_answered_not_dropped(
    stack: Stack, start_bridge: StartBridge, hooks: HookPoster
) -> None:
    bridge = await start_bridge(bridge={"attachments": {"max_bytes": 1000}})
    session, room, ghost = await open_thread(stack, bridge, hooks)
    alice = stack.users["alice"]
    big = png(40, 40, noise=True)
    assert len(big) > 1000
    sent = await send_file(alice, room, big, "big.png")
    reply = await reply_to(alice, room, ghost, sent)
    assert "is larger than the 1000 B" in reply
    # The size the client declared is not what counts: a file that lies about it is cut off
    # while downloading, and answered the same way.
    url = await upload(alice, big, "liar.png", "image/png")
    lying = await alice.send_event(
        room,
        "m.room.message",
        {"msgtype": "m.image", "body": "liar.png", "url": url, "info": {"size": 10}},
    )
    reply = await reply_to(alice, room, ghost, lying)
    assert "is larger than" in reply
    assert await bridge.db.fetchval("SELECT COUNT(*) FROM session_message") == 0
    assert (await hooks.post(post_tool_use(session)))[1] == {}


async def test_plain_http_hooks_hold_the_file_and_say_why_until_a_command_path_takes_it(
    stack: Stack, bridge: Bridge, hooks: HookPoster, tmp_path: Path
) -> None:
    session, room, ghost = await open_thread(stack, bridge, hooks)
    alice = stack.users["alice"]
    sent = await send_file(alice, room, png(), "held.png")
    after = await alice.send_text(room, "what do you see?")
    await queued(bridge, session.lower(), 2)
    # A plain http hook of a token that is not local can't put the file on Claude's host: the
    # file and what came after it wait, and the room is told why.
    assert (await hooks.post(post_tool_use(session)))[1] == {}
    note = await reply_to(alice, room, ghost, sent)
    assert "waits" in note and "--durable" in note
    stored = list(bridge.control.files_dir.rglob("*-held.png"))
    assert len(stored) == 1 and stored[0].read_bytes() == png()
    # Redacting a file before delivery withdraws it, like a text, and the bridge's copy goes.
    redaction = await alice.redact(room, sent)
    await processed(bridge, redaction)
    assert not stored[0].exists()
    assert context_of((await hooks.post(post_tool_use(session)))[1]) == (
        "Message from @alice:localhost via Matrix:\n> what do you see?"
    )
    await delivered_mark(alice, room, ghost, after)


async def test_a_local_token_gets_the_file_written_by_the_bridge(
    stack: Stack, start_bridge: StartBridge, hooks: HookPoster, tmp_path: Path
) -> None:
    local_root = tmp_path / "local-attachments"
    bridge = await start_bridge(
        hooks={"tokens": {"laptop": {"secret": HOOK_TOKEN, "local": True}}},
        bridge={"attachments": {"local_directory": str(local_root)}},
    )
    session, room, ghost = await open_thread(stack, bridge, hooks)
    alice = stack.users["alice"]
    image = png(5, 5)
    sent = await send_file(alice, room, image, "../../etc/passwd.png")
    await queued(bridge, session.lower(), 1)
    answer = (await hooks.post(post_tool_use(session)))[1]
    assert "claudeBridgeFiles" not in answer
    path = attached_path(context_of(answer))
    assert path.parent == local_root / session  # the name can't climb out
    assert path.name.endswith("-passwd.png")
    assert path.read_bytes() == image
    assert_private(path)
    await delivered_mark(alice, room, ghost, sent)
    assert sorted(os.listdir(local_root)) == [session]


async def test_a_file_the_host_never_fetches_is_said_in_the_room(
    stack: Stack, bridge: Bridge, hooks: HookPoster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_carrier, "FETCH_GRACE", 0.2)
    session, room, ghost = await open_thread(stack, bridge, hooks)
    alice = stack.users["alice"]
    sent = await send_file(alice, room, png(), "lost.png")
    await queued(bridge, session.lower(), 1)
    # A command path says it writes files, takes the answer naming one, and never fetches it.
    headers = {"X-Claude-Bridge-Files": "/home/dev/.cache/claude-bridge/attachments"}
    answer = (await hooks.post(post_tool_use(session), **headers))[1]
    assert [f["name"] for f in answer["claudeBridgeFiles"]] == ["lost.png"]
    note = await reply_to(alice, room, ghost, sent, lambda c: "never fetched" in c["body"])
    assert "lost.png was handed to Claude Code's hook" in note
    seen = alice.seen_events(room)
    assert not any(e["type"] == "m.reaction" and e["sender"] == ghost for e in seen)


async def test_files_of_quiet_sessions_are_deleted_and_queued_ones_withdrawn(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session, room, _ = await open_thread(stack, bridge, hooks)
    alice = stack.users["alice"]
    await send_file(alice, room, png(), "old.png")
    await queued(bridge, session.lower(), 1)
    [stored] = list(bridge.control.files_dir.rglob("*-old.png"))
    assert await bridge.control.intake.prune(now_ms() - 60_000) == 0  # not quiet long enough
    assert await bridge.control.intake.prune(now_ms() + 60_000) == 1
    assert not stored.exists()
    assert await bridge.control.parts.inbox.count_queued(session.lower()) == 0
    assert (await hooks.post(post_tool_use(session)))[1] == {}


async def test_a_sessions_files_are_capped_in_total(
    stack: Stack, start_bridge: StartBridge, hooks: HookPoster
) -> None:
    image = png()
    limit = {"max_bytes": 1000, "session_max_bytes": len(image) * 2}
    bridge = await start_bridge(bridge={"attachments": limit})
    session, room, ghost = await open_thread(stack, bridge, hooks)
    alice = stack.users["alice"]
    for name in ("one.png", "two.png"):
        await send_file(alice, room, image, name)
    await queued(bridge, session.lower(), 2)
    third = await send_file(alice, room, image, "three.png")
    assert "would take this session's files past" in await reply_to(alice, room, ghost, third)
    assert await bridge.control.parts.inbox.count_queued(session.lower()) == 2


async def test_downloads_go_through_the_authenticated_media_api(
    stack: Stack, bridge: Bridge
) -> None:
    alice = stack.users["alice"]
    image = png(2, 2)
    url = await upload(alice, image, "a.png", "image/png")
    server, media_id = media.split_mxc(url)
    path = media.AUTHENTICATED.format(server=server, media=media_id)
    assert (await media._get(bridge.client, path, 1000))[0] == image  # v1 itself, as the bot
    assert (await media.download(bridge.client, url, 1000))[0] == image
    with pytest.raises(media.TooLarge):
        await media.download(bridge.client, url, len(image) - 1)
    with pytest.raises(MatrixError) as missing:
        await media.download(bridge.client, f"mxc://{server}/NoSuchMedia", 1000)
    assert missing.value.status == 404
    with pytest.raises(media.BadMediaURL):
        await media.download(bridge.client, "https://example.org/a.png", 1000)


async def test_a_file_in_the_bots_chat_is_answered(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    alice, bot = stack.users["alice"], "@claudebot:localhost"
    dm = await alice.create_room(invite=[bot], is_direct=True)
    await alice.wait_for(lambda e: e["sender"] == bot and e["type"] == "m.room.message", room_id=dm)
    sent = await send_file(alice, dm, png(), "where.png")
    assert "session's own room" in await reply_to(alice, dm, bot, sent)
    assert await bridge.db.fetchval("SELECT COUNT(*) FROM session_message") == 0
