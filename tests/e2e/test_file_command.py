"""``!claude file <path>``: a file of the project, read on Claude Code's host, posted to the room.

Real Synapse, both stores; the host is the real command shim (as ``--durable`` runs it, and its
background waiter) with its project directory in ``tmp_path``. The posted file is downloaded
back through Synapse's authenticated media API.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from claude_bridge.app import Bridge
from tests.e2e.conftest import (
    HOOK_TOKEN,
    HookPoster,
    Stack,
    StartBridge,
    hook_payload,
    new_session,
)
from tests.e2e.test_attachments import OTHER_TOKEN, idle_with_waiter, png, reply_to, run_shim
from tests.e2e.test_control import post_tool_use
from tests.e2e.test_foundation import _wait_for_room
from tests.matrix_client import MatrixTestClient

pytestmark = pytest.mark.e2e

GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


async def project_thread(
    stack: Stack, bridge: Bridge, hooks: HookPoster, project: Path
) -> tuple[str, str, str]:
    """A session started in ``project``, alice in its room: (session, room, ghost)."""
    session = new_session()
    assert (await hooks.post(hook_payload("SessionStart", session, cwd=str(project))))[0] == 200
    room = await _wait_for_room(bridge, session.lower())
    await stack.users["alice"].wait_for_invite(room)
    await stack.users["alice"].join(room)
    return session, room, f"@claude-{session.lower()}:localhost"


async def posted_file(user: MatrixTestClient, room: str, ghost: str, asked: str) -> bytes:
    """The ``m.file`` the ghost posted in reply to ``asked``, downloaded."""
    event = await user.wait_for(
        lambda e: (
            e["sender"] == ghost
            and e["content"].get("msgtype") == "m.file"
            and e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
            == asked
        ),
        room_id=room,
    )
    server, media = event["content"]["url"].removeprefix("mxc://").split("/")
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{user.base_url}/_matrix/client/v1/media/download/{server}/{media}",
            headers={"Authorization": f"Bearer {user.access_token}"},
        ) as resp,
    ):
        assert resp.status == 200
        return await resp.read()


async def outcome(user: MatrixTestClient, room: str, ghost: str, asked: str) -> str:
    """The ghost's word on how a request ended (after its "Asked …" reply)."""

    def told(content: dict[str, Any]) -> bool:
        body = str(content.get("body", ""))
        return "Asked Claude Code's host" not in body and content.get("msgtype") != "m.file"

    return await reply_to(user, room, ghost, asked, told)


async def ask(user: MatrixTestClient, room: str, ghost: str, path: str) -> tuple[str, str]:
    """``!claude file <path>``: the command's event id and the reply to it."""
    asked = await user.send_text(room, f"!claude file {path}")
    return asked, await reply_to(user, room, ghost, asked)


async def test_a_project_file_is_read_on_the_host_and_posted(
    stack: Stack, bridge: Bridge, hooks: HookPoster, tmp_path: Path
) -> None:
    project = tmp_path / "demo-app"
    (project / "src").mkdir(parents=True)
    (project / "src" / "app.py").write_text("print('hello')\n")
    (project / "shot.png").write_bytes(image := png(4, 4, noise=True))
    (project / "config.env").write_text(f"GITHUB_TOKEN={GITHUB_TOKEN}\nDEBUG=1\n")
    big = os.urandom(1536 * 1024)  # past hooks.max_body_bytes (1 MiB): files have their own cap
    (project / "dump.bin").write_bytes(big)
    session, room, ghost = await project_thread(stack, bridge, hooks, project)
    alice = stack.users["alice"]
    asked = {}
    for path in ("src/app.py", str(project / "shot.png"), "./config.env", "dump.bin"):
        asked[path], reply = await ask(alice, room, ghost, path)
        assert "Asked Claude Code's host for" in reply
    # A plain http hook can't read files: the requests stay for a command path.
    assert (await hooks.post(post_tool_use(session)))[1] == {}
    code, out, err = await run_shim(stack, tmp_path, [], post_tool_use(session))
    assert code == 0 and json.loads(out) == {}, err  # the shim took the requests out

    assert await posted_file(alice, room, ghost, asked["src/app.py"]) == b"print('hello')\n"
    assert await posted_file(alice, room, ghost, asked[str(project / "shot.png")]) == image
    assert await posted_file(alice, room, ghost, asked["dump.bin"]) == big
    scrubbed = await posted_file(alice, room, ghost, asked["./config.env"])
    assert GITHUB_TOKEN not in scrubbed.decode() and b"DEBUG=1" in scrubbed
    assert "secrets redacted" in await outcome(alice, room, ghost, asked["./config.env"])


async def test_path_escapes_are_refused_in_the_room_and_on_the_host(
    stack: Stack, bridge: Bridge, hooks: HookPoster, tmp_path: Path
) -> None:
    project = tmp_path / "demo-app"
    outside = tmp_path / "outside"
    project.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("the host's secret\n")
    (project / "link.txt").symlink_to(outside / "secret.txt")
    (project / "linked-dir").symlink_to(outside)
    (project / "a-dir").mkdir()
    session, room, ghost = await project_thread(stack, bridge, hooks, project)
    alice = stack.users["alice"]
    # Refused before anything is asked: `..`, a path outside the project.
    for path in ("../outside/secret.txt", "a-dir/../../outside/secret.txt", str(outside)):
        _, reply = await ask(alice, room, ghost, path)
        assert "refused" in reply or "outside the project" in reply, reply
    # Refused by the host, which never follows a link or reads what isn't a regular file.
    asked = {}
    for path in ("link.txt", "linked-dir/secret.txt", "a-dir", "missing.txt"):
        asked[path], _ = await ask(alice, room, ghost, path)
    code, _, err = await run_shim(stack, tmp_path, [], post_tool_use(session))
    assert code == 0, err
    for path, event_id in asked.items():
        note = await outcome(alice, room, ghost, event_id)
        assert f"`{path}` refused" in note, note
    files = [e for e in alice.seen_events(room) if e["content"].get("msgtype") == "m.file"]
    assert files == []


async def test_the_background_waiter_answers_a_file_request_and_keeps_waiting(
    stack: Stack, bridge: Bridge, hooks: HookPoster, tmp_path: Path
) -> None:
    project = tmp_path / "demo-app"
    project.mkdir()
    (project / "NOTES.md").write_text("# notes\n")
    session, room, ghost = await project_thread(stack, bridge, hooks, project)
    alice = stack.users["alice"]
    waiting = await idle_with_waiter(stack, bridge, hooks, tmp_path, session)
    asked, _ = await ask(alice, room, ghost, "NOTES.md")
    assert await posted_file(alice, room, ghost, asked) == b"# notes\n"
    assert not waiting.done()  # a file request wakes nobody: the waiter polls on
    await alice.send_text(room, "thanks, now summarise it")
    code, _, err = await waiting
    assert code == 2 and "thanks, now summarise it" in err.decode()


async def test_another_token_cannot_answer_a_file_request(
    stack: Stack, start_bridge: StartBridge, hooks: HookPoster, tmp_path: Path
) -> None:
    bridge = await start_bridge(hooks={"tokens": {"laptop": HOOK_TOKEN, "desktop": OTHER_TOKEN}})
    project = tmp_path / "demo-app"
    project.mkdir()
    session, room, ghost = await project_thread(stack, bridge, hooks, project)
    alice = stack.users["alice"]
    asked, _ = await ask(alice, room, ghost, "anything.txt")
    offered: list[dict[str, Any]] = bridge.control.file_requests.offer(session.lower())
    url = (
        f"http://{stack.config['hooks']['listen']}/claude/v1/sessions/{session}/file-requests/"
        f"{offered[0]['id']}"
    )
    async with aiohttp.ClientSession() as http:
        for token, status in ((None, 401), ("not-a-token", 401), (OTHER_TOKEN, 403)):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with http.post(url, data=b"forged", headers=headers) as resp:
                assert resp.status == status
        # The same token, through another of its sessions: not that session's request.
        other = new_session()
        assert (await hooks.post(hook_payload("SessionStart", other)))[0] == 200
        owner = {"Authorization": f"Bearer {HOOK_TOKEN}"}
        elsewhere = url.replace(f"/sessions/{session}/", f"/sessions/{other}/")
        async with http.post(elsewhere, data=b"forged", headers=owner) as resp:
            assert resp.status == 404
        # The owner answers once; a second answer finds nothing outstanding.
        async with http.post(url, data=b"real", headers=owner) as resp:
            assert resp.status == 200
        async with http.post(url, data=b"again", headers=owner) as resp:
            assert resp.status == 404
    assert await posted_file(alice, room, ghost, asked) == b"real"


async def test_file_requests_outlive_a_restart(
    stack: Stack, start_bridge: StartBridge, hooks: HookPoster, tmp_path: Path
) -> None:
    """A request outstanding when the bridge stops is neither lost nor silent: one a host was
    handed before the restart is answered into the new process, one nobody took yet is offered
    to the next command path, one whose wait ran out while the bridge was down is answered as
    such."""
    first = await start_bridge()
    project = tmp_path / "demo-app"
    project.mkdir()
    (project / "taken.txt").write_text("read before the restart\n")
    (project / "later.txt").write_text("read after it\n")
    session, room, ghost = await project_thread(stack, first, hooks, project)
    alice = stack.users["alice"]
    taken, _ = await ask(alice, room, ghost, "taken.txt")
    handed: list[dict[str, Any]] = first.control.file_requests.offer(session.lower())
    assert [r["path"] for r in handed] == ["taken.txt"]
    later, _ = await ask(alice, room, ghost, "later.txt")
    expired, _ = await ask(alice, room, ghost, "expired.txt")
    # As if expired.txt had been asked for longer ago than a request waits (this process keeps
    # its own timer; the next one reads the row).
    await first.db.execute(
        "UPDATE file_request SET asked_at = asked_at - 3600000 WHERE path = 'expired.txt'"
    )
    await first.stop()

    second = await start_bridge()
    assert "did not come" in await outcome(alice, room, ghost, expired)
    url = (
        f"http://{stack.config['hooks']['listen']}/claude/v1/sessions/{session}/file-requests/"
        f"{handed[0]['id']}"
    )
    owner = {"Authorization": f"Bearer {HOOK_TOKEN}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=b"read before the restart\n", headers=owner) as resp:
            assert resp.status == 200, await resp.text()
    assert await posted_file(alice, room, ghost, taken) == b"read before the restart\n"
    # The command path after the restart is offered what is still outstanding, the request
    # answered above included no more.
    code, out, err = await run_shim(stack, tmp_path, [], post_tool_use(session))
    assert code == 0 and json.loads(out) == {}, err
    assert await posted_file(alice, room, ghost, later) == b"read after it\n"
    assert await second.db.fetchval("SELECT COUNT(*) FROM file_request") == 0
    assert second.control.file_requests.offer(session.lower()) == []
