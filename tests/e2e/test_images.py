"""Images Claude looks at, shown in the room: uploaded through Synapse's media repository and
posted as ``m.image`` in the tool call's thread, once, whatever fails in between.

The payloads are the ones captured from the real CLI (``tests/fixtures/hook-payloads/``); the
last test runs the real CLI itself.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from ruamel.yaml import YAML

from claude_bridge.app import Bridge, build
from claude_bridge.config import parse_config
from claude_bridge.devenv.synapse import LocalSynapse
from claude_bridge.registration import build_registration
from tests.e2e.claude_code import REPO
from tests.e2e.conftest import (
    HOOK_TOKEN,
    HookPoster,
    Stack,
    StartBridge,
    hook_payload,
    loopback_config,
    new_session,
)
from tests.e2e.fake_anthropic import TOOL_REPLY, FakeAnthropic
from tests.e2e.proxy import HomeserverProxy
from tests.e2e.test_claude_cli import claude_code
from tests.e2e.test_fault_slow_and_limited import drained, room_of, until
from tests.images import b64, png
from tests.matrix_client import MatrixTestClient, user_client

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hook-payloads"


def captured(name: str, session: str, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"PostToolUse.{name}.json").read_text())
    return {**data, "session_id": session, **fields}


def pre_tool_use(post: dict[str, Any]) -> dict[str, Any]:
    """The PreToolUse that came before ``post``."""
    fields = {k: post[k] for k in ("cwd", "tool_name", "tool_input", "tool_use_id")}
    return hook_payload("PreToolUse", post["session_id"], **fields)


def in_thread(events: list[dict[str, Any]], root: str) -> list[dict[str, Any]]:
    return [
        e
        for e in events
        if e["type"] == "m.room.message"
        and e["content"].get("m.relates_to", {}).get("rel_type") == "m.thread"
        and e["content"]["m.relates_to"]["event_id"] == root
    ]


def line_of(events: list[dict[str, Any]], text: str) -> dict[str, Any]:
    return next(
        e
        for e in events
        if e["type"] == "m.room.message"
        and text in e["content"].get("body", "")
        and "m.relates_to" not in e["content"]
    )


def images(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        e
        for e in events
        if e["type"] == "m.room.message" and e["content"].get("msgtype") == "m.image"
    ]


async def download(base_url: str, user: MatrixTestClient, mxc: str, thumb: bool = False) -> bytes:
    """Through the authenticated media API, as clients fetch it."""
    media = mxc.removeprefix("mxc://")
    path = f"thumbnail/{media}?width=320&height=240" if thumb else f"download/{media}"
    headers = {"Authorization": f"Bearer {user.access_token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base_url}/_matrix/client/v1/media/{path}", headers=headers) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return await resp.read()


async def room_events(stack: Stack, room: str) -> list[dict[str, Any]]:
    alice = stack.users["alice"]
    await alice.wait_for_invite(room)
    await alice.join(room)
    return await alice.messages(room, limit=200)


async def test_a_read_and_an_mcp_tools_image_are_m_images_in_their_threads(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session = new_session()
    posts = [captured(name, session) for name in ("Read.png", "Read.png.resized", "mcp.image")]
    assert (await hooks.post(hook_payload("SessionStart", session)))[0] == 200
    room = await room_of(bridge, session)
    for post in posts:  # one at a time: queued together, their lines would share a message
        for payload in (pre_tool_use(post), post):
            status, body = await hooks.post(payload)
            assert status == 200, body
        await until(lambda: drained(bridge, session), "the call delivered")
    events = await room_events(stack, room)
    alice = stack.users["alice"]

    for post, line_text in zip(posts, ["plot.png", "big.png", "images › screenshot"], strict=True):
        line = line_of(events, line_text)
        (image,) = images(in_thread(events, line["event_id"]))
        sent = post["tool_response"]
        encoded = sent["file"]["base64"] if "file" in sent else sent[0]["source"]["data"]
        expected = base64.b64decode(encoded)
        content = image["content"]
        assert await download(stack.synapse.url, alice, content["url"]) == expected
        info = content["info"]
        assert info["size"] == len(expected) and info["mimetype"] == "image/png"
        if line_text == "big.png":  # 2000×1333: the media repository scales it
            assert (info["w"], info["h"]) == (2000, 1333)
            assert "thumbnail_url" not in info
            thumb = await download(stack.synapse.url, alice, content["url"], thumb=True)
            assert thumb.startswith(b"\x89PNG") or thumb.startswith(b"\xff\xd8")
        else:  # small: its own thumbnail
            assert info["thumbnail_url"] == content["url"]
            assert info["thumbnail_info"]["w"] == info["w"]
    # The Read's note gave way to the image; the MCP tool's text is still there, without base64.
    mcp_thread = in_thread(events, line_of(events, "images › screenshot")["event_id"])
    texts = [e["content"]["body"] for e in mcp_thread if e["content"]["msgtype"] != "m.image"]
    assert len(texts) == 1 and "the page" in texts[0] and "iVBOR" not in texts[0]
    assert not [
        e
        for e in in_thread(events, line_of(events, "plot.png")["event_id"])
        if e["content"]["msgtype"] != "m.image"
    ]


async def image_send_held(
    bridge: Bridge,
    hooks: HookPoster,
    proxy: HomeserverProxy,
    *,
    forward: bool,
    while_held: Callable[[], Awaitable[Any]] | None = None,
) -> tuple[str, str, str]:
    """A session whose Read line is in the room, then the Read's PostToolUse, its image's send
    held by the proxy (``forward``: Synapse stores it, the answer is withheld) while
    ``while_held`` runs. Returns the session, its room and the send path pattern."""
    session = new_session()
    post = captured("Read.png", session)
    for payload in (hook_payload("SessionStart", session), pre_tool_use(post)):
        assert (await hooks.post(payload))[0] == 200
    room = await room_of(bridge, session)
    await until(lambda: drained(bridge, session), "the call's line delivered")
    send = f"/rooms/{re.escape(room)}/send/m.room.message/"
    rule = proxy.hang(method="PUT", path=send, forward=forward, times=1)
    assert (await hooks.post(post))[0] == 200
    await proxy.wait_holding(rule)
    if while_held is not None:
        await while_held()
    proxy.release(rule)  # forward=False: a 504, Synapse never saw it
    return session, room, send


async def test_a_failed_send_is_retried_with_the_same_upload_and_posts_once(
    stack: Stack, start_bridge: StartBridge, hooks: HookPoster
) -> None:
    """The send of the image fails without reaching Synapse: the retry sends the mxc URI it
    already has (one upload), under the same transaction id."""
    proxy = await HomeserverProxy(stack.synapse.url).start()
    try:
        bridge = await start_bridge(homeserver={"address": proxy.url})
        session, room, send = await image_send_held(bridge, hooks, proxy, forward=False)
        await until(lambda: drained(bridge, session), "the image retried")
        uploads = [r for r in proxy.log if "/upload" in r.path and "plot.png" in r.query]
        assert len(uploads) == 1  # (the ghost's avatar is another upload)
        sends = [r for r in proxy.log if r.method == "PUT" and re.search(send, r.path)]
        assert sends[-1].status == 200 and b'"url": "mxc://' in sends[-1].body
        events = await room_events(stack, room)
        assert len(images(events)) == 1
    finally:
        await proxy.stop()


async def test_a_restart_after_the_send_reached_synapse_does_not_post_it_twice(
    stack: Stack, start_bridge: StartBridge, hooks: HookPoster
) -> None:
    """Synapse stored the image message but the bridge stopped before it heard so: the next
    bridge on the same store finds it in the room (its transaction id) instead of posting it
    again. At most the bytes were uploaded twice, one copy unused."""
    proxy = await HomeserverProxy(stack.synapse.url).start()
    try:
        # A long request timeout: the first bridge is stopped before it gives up on the send.
        first = await start_bridge(homeserver={"address": proxy.url, "request_timeout": 120})
        session, room, _ = await image_send_held(
            first, hooks, proxy, forward=True, while_held=first.stop
        )
        second = await start_bridge()
        await until(lambda: drained(second, session), "the image handled after the restart")
        events = await room_events(stack, room)
        (image,) = images(events)
        sent = await second.db.fetch(
            "SELECT event_id FROM sent_event WHERE thread_id=$1", session.lower()
        )
        assert image["event_id"] in {r["event_id"] for r in sent}  # recorded, not re-posted
    finally:
        await proxy.stop()


async def test_a_payload_without_the_image_never_makes_the_bridge_read_the_path(
    stack: Stack, bridge: Bridge, hooks: HookPoster, tmp_path: Path
) -> None:
    """A Read whose payload names an image but does not carry it (a forged hook, or a CLI that
    stops sending it), the image sitting on the bridge's own disk: the room gets no image, the
    path stays text. The bridge reads no path for any token, local or not."""
    on_bridge_host = tmp_path / "secret-diagram.png"
    on_bridge_host.write_bytes(png(20, 20))
    session = new_session()
    post = captured("Read.png", session, tool_input={"file_path": str(on_bridge_host)})
    post["tool_response"] = {"type": "image", "file": {"filePath": str(on_bridge_host)}}
    assert (await hooks.post(hook_payload("SessionStart", session)))[0] == 200
    room = await room_of(bridge, session)
    for payload in (pre_tool_use(post), post):
        assert (await hooks.post(payload))[0] == 200
    await until(lambda: drained(bridge, session), "the call delivered")
    events = await room_events(stack, room)
    assert images(events) == []
    assert not [e for e in events if e["content"].get("msgtype") == "m.file"]
    (said,) = in_thread(events, line_of(events, "secret-diagram.png")["event_id"])
    assert str(on_bridge_host) in said["content"]["body"]


# --- over the homeserver's upload limit -------------------------------------------------------


@pytest.fixture(scope="module")
async def small_uploads(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A Synapse of its own that accepts uploads up to 20 KiB."""
    workdir = tmp_path_factory.mktemp("small-uploads")
    config = loopback_config(permissions={"@alice:localhost": "operator"}, logging={})
    YAML().dump(build_registration(parse_config(config)), workdir / "registration.yaml")
    port = int(config["homeserver"]["address"].rsplit(":", 1)[1])
    synapse = LocalSynapse(
        workdir / "synapse",
        port=port,
        app_service_config_files=[workdir / "registration.yaml"],
        extra_config={"max_upload_size": "20K"},
    )
    await synapse.start()
    alice = await user_client(synapse, "alice")
    try:
        yield config, synapse, alice
    finally:
        await alice.close()
        await synapse.stop()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # the homeserver's limit
async def test_an_image_over_the_upload_limit_becomes_a_line(
    small_uploads: Any, store_url: str, tmp_path: Path
) -> None:
    config, synapse, alice = small_uploads
    bridge = build(parse_config({**config, "database": store_url}), tmp_path)
    await bridge.start()
    hooks = HookPoster(f"http://{config['hooks']['listen']}")
    try:
        session = new_session()
        big, small = png(100, 100, noise=True), png(10, 10)  # 30 KB (over 20 KiB), 100 B
        posts = []
        for n, (data, name) in enumerate([(big, "noise.png"), (small, "dot.png")]):
            post = captured("Read.png", session, tool_use_id=f"toolu_{n}")
            post["tool_input"] = {"file_path": f"{post['cwd']}/{name}"}
            post["tool_response"]["file"]["base64"] = b64(data)
            posts.append(post)
        assert (await hooks.post(hook_payload("SessionStart", session)))[0] == 200
        room = await room_of(bridge, session)
        for post in posts:
            for payload in (pre_tool_use(post), post):
                assert (await hooks.post(payload))[0] == 200
            await until(lambda: drained(bridge, session), "the call delivered")
        await alice.join(room)
        events = await alice.messages(room, limit=100)
        (said,) = in_thread(events, line_of(events, "noise.png")["event_id"])
        assert said["content"]["msgtype"] == "m.notice"
        assert said["content"]["body"] == (
            "🖼️ noise.png (image/png, 100×100, 29 KB): not shown, larger than the homeserver accepts"
        )
        # The next image is shown: one refused upload holds nothing up.
        (shown,) = images(in_thread(events, line_of(events, "dot.png")["event_id"]))
        assert await download(synapse.url, alice, shown["content"]["url"]) == small
    finally:
        await hooks.close()
        await bridge.stop()


# --- the real CLI ---------------------------------------------------------------------------


async def test_the_real_cli_reading_a_png_shows_it_in_the_room(
    stack: Stack, bridge: Bridge, model: FakeAnthropic, tmp_path: Path
) -> None:
    claude = await claude_code(stack, model, tmp_path)
    image = png(48, 32)
    (claude.project / "plot.png").write_bytes(image)
    session = str(uuid.uuid4())

    rc, out, err = await claude.print_mode(
        f"READ: {claude.project}/plot.png", "--session-id", session, "--allowedTools", "Read"
    )

    assert (rc, out.strip()) == (0, TOOL_REPLY), err
    room = await room_of(bridge, session)
    await until(lambda: drained(bridge, session), "the session delivered")
    events = await room_events(stack, room)
    (shown,) = images(in_thread(events, line_of(events, "Read: plot.png")["event_id"]))
    assert shown["sender"] == f"@claude-{session}:localhost"
    assert shown["content"]["info"]["w"] == 48 and shown["content"]["info"]["h"] == 32
    got = await download(stack.synapse.url, stack.users["alice"], shown["content"]["url"])
    assert got == image  # small enough that the CLI sent it as it is
    assert HOOK_TOKEN not in json.dumps(events)


async def test_the_real_cli_calling_an_mcp_screenshot_tool_shows_its_image(
    stack: Stack, bridge: Bridge, model: FakeAnthropic, tmp_path: Path
) -> None:
    """A stdio MCP server (``image_mcp.py``) returns image content, as a browser tool does."""
    claude = await claude_code(stack, model, tmp_path)
    image = png(40, 24)
    (tmp_path / "page.png").write_bytes(image)
    server = {"command": sys.executable, "args": ["-m", "tests.e2e.image_mcp", str(tmp_path / "page.png")],
              "env": {"PYTHONPATH": str(REPO)}}  # fmt: skip
    (tmp_path / "mcp.json").write_text(json.dumps({"mcpServers": {"images": server}}))
    settings = claude.home / ".claude" / "settings.json"
    # MCP tools are deferred behind ToolSearch by default; the scripted model calls it directly.
    merged = {**json.loads(settings.read_text()), "env": {"ENABLE_TOOL_SEARCH": "false"}}
    settings.write_text(json.dumps(merged))
    session = str(uuid.uuid4())

    rc, out, err = await claude.print_mode(
        "CALL: mcp__images__screenshot",
        "--session-id",
        session,
        "--mcp-config",
        str(tmp_path / "mcp.json"),
        "--allowedTools",
        "mcp__images__screenshot",
    )

    assert (rc, out.strip()) == (0, TOOL_REPLY), err
    room = await room_of(bridge, session)
    await until(lambda: drained(bridge, session), "the session delivered")
    events = await room_events(stack, room)
    thread = in_thread(events, line_of(events, "images › screenshot")["event_id"])
    (shown,) = images(thread)
    assert shown["content"]["body"] == "screenshot.png"
    got = await download(stack.synapse.url, stack.users["alice"], shown["content"]["url"])
    assert got == image
    assert any("the page" in e["content"]["body"] for e in thread if e not in images(thread))
