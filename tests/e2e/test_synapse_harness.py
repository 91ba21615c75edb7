"""Self-test of the real-Synapse harness: LocalSynapse + MatrixTestClient."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from claude_bridge.devenv.synapse import LocalSynapse
from tests.matrix_client import MatrixRequestError, MatrixTestClient, user_client

pytestmark = pytest.mark.e2e


def write_registration(path: Path) -> tuple[str, str]:
    """A minimal appservice registration; JSON is valid YAML. Returns (as_token, hs_token)."""
    as_token, hs_token = secrets.token_hex(16), secrets.token_hex(16)
    registration = {
        "id": "test-as",
        "url": None,  # never pushed to: nothing listens in this test
        "as_token": as_token,
        "hs_token": hs_token,
        "sender_localpart": "testbot",
        "rate_limited": False,
        "namespaces": {
            "users": [{"exclusive": True, "regex": "@testghost-.*"}],
            "aliases": [],
            "rooms": [],
        },
    }
    path.write_text(json.dumps(registration, indent=2))
    return as_token, hs_token


async def test_local_synapse_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    as_token, _ = write_registration(tmp_path / "test-as.yaml")
    hs = LocalSynapse(tmp_path / "synapse", app_service_config_files=[tmp_path / "test-as.yaml"])
    t0 = time.monotonic()
    await hs.start()
    print(f"\nsynapse first start (config + key generation): {time.monotonic() - t0:.2f}s")
    assert hs.url == f"http://127.0.0.1:{hs.port}"
    port = hs.port
    try:
        alice = await user_client(hs, "alice", admin=True)
        bob = await user_client(hs, "bob")
        assert alice.user_id == "@alice:localhost"

        room = await alice.create_room(
            name="harness", invite=[bob.user_id], alias_localpart="harness"
        )
        assert await bob.wait_for_invite(timeout=60) == room
        assert room in await bob.invited_rooms()
        assert await bob.join("#harness:localhost") == room
        assert set(await alice.joined_members(room)) == {alice.user_id, bob.user_id}

        hello = await alice.send_text(room, "hello bob", html="<b>hello</b> bob")
        seen = await bob.wait_for(
            lambda e: e["content"]["body"] == "hello bob", room_id=room, timeout=60
        )
        assert seen["event_id"] == hello and seen["room_id"] == room
        assert seen["content"]["formatted_body"] == "<b>hello</b> bob"

        # Events from earlier syncs count: already delivered, so no /sync is needed at all.
        syncs = []
        sync_once = bob.sync_once

        async def counted(long_poll: float = 0.0) -> list[dict[str, Any]]:
            syncs.append(long_poll)
            return await sync_once(long_poll)

        monkeypatch.setattr(bob, "sync_once", counted)
        again = await bob.wait_for(lambda e: e["event_id"] == hello, timeout=60)
        assert again["event_id"] == hello and syncs == []
        monkeypatch.undo()

        # An event sent before a client's first sync is found too (via the initial sync).
        early = await alice.send_text(room, "in a thread", thread_root=hello)
        fresh_bob = MatrixTestClient(hs.url, bob.user_id, bob.access_token)
        threaded = await fresh_bob.wait_for(lambda e: e["event_id"] == early, timeout=60)
        assert threaded["content"]["m.relates_to"]["rel_type"] == "m.thread"
        await fresh_bob.close()

        reaction = await bob.react(room, hello, "👍")
        got = await alice.wait_for(lambda e: e["event_id"] == reaction, room_id=room, timeout=60)
        assert got["content"]["m.relates_to"]["key"] == "👍"
        await alice.redact(room, reaction)
        assert (await alice.get_event(room, reaction))["content"] == {}

        with pytest.raises(TimeoutError, match="no matching event"):
            await bob.wait_for(lambda e: e["content"]["body"] == "never sent", timeout=0.5)

        # The appservice's as_token works, as its sender and as a ghost in its namespace.
        bot = MatrixTestClient(hs.url, "@testbot:localhost", as_token, appservice=True)
        assert (await bot.whoami())["user_id"] == "@testbot:localhost"
        await bot.request(
            "POST",
            "/_matrix/client/v3/register",
            body={"type": "m.login.application_service", "username": "testghost-1"},
        )
        ghost = MatrixTestClient(hs.url, "@testghost-1:localhost", as_token, appservice=True)
        assert (await ghost.whoami())["user_id"] == "@testghost-1:localhost"
        outsider = MatrixTestClient(hs.url, "@bob:localhost", as_token, appservice=True)
        with pytest.raises(MatrixRequestError) as excinfo:
            await outsider.whoami()
        assert excinfo.value.status == 403
        await bot.close()
        await ghost.close()
        await outsider.close()

        # A waiter survives a restart: it retries /sync while Synapse is down.
        waiter = asyncio.create_task(
            bob.wait_for(lambda e: e["content"]["body"] == "after restart", timeout=60)
        )
        await hs.stop()
        assert not hs.running
        t0 = time.monotonic()
        await hs.start()
        print(f"synapse restart: {time.monotonic() - t0:.2f}s")
        assert hs.port == port

        # Data survived: room, alias, membership and history.
        assert await alice.resolve_alias("#harness:localhost") == room
        assert await alice.resolve_alias("#nope:localhost") is None
        assert set(await alice.joined_members(room)) == {alice.user_id, bob.user_id}
        bodies = [e["content"].get("body") for e in await bob.messages(room)]
        assert "hello bob" in bodies
        state_types = {e["type"] for e in await alice.room_state(room)}
        assert {"m.room.create", "m.room.name", "m.room.canonical_alias"} <= state_types

        after = await alice.send_text(room, "after restart")
        assert (await asyncio.wait_for(waiter, 30))["event_id"] == after

        # A crash (SIGKILL) is survivable too.
        hs.kill()
        await hs.start()
        assert await bob.resolve_alias("#harness:localhost") == room
        await alice.close()
        await bob.close()
    finally:
        await hs.stop()
    assert not hs.running


# Runs in a subprocess: importing Synapse into the test process would drag in its
# Twisted and logging side effects (and deprecation noise) for every later test.
_PARSE_CONFIG = """
import json, sys
from synapse.config.homeserver import HomeServerConfig
from synapse.config.ratelimiting import RatelimitSettings
config = HomeServerConfig.load_config("test", ["-c", sys.argv[1]])
print(json.dumps({
    "limits": {
        value.key: [value.per_second, value.burst_count]
        for value in vars(config.ratelimiting).values()
        if isinstance(value, RatelimitSettings) and value.key != "rc_remote_media_downloads"
    },
    "federation_domain_whitelist": config.federation.federation_domain_whitelist,
    "key_servers": len(config.key.key_servers),
    "report_stats": config.metrics.report_stats,
}))
"""


def test_config_rate_limits_and_overrides(tmp_path: Path) -> None:
    """Synapse itself parses our config: every rate limiter is generous unless overridden."""
    hs = LocalSynapse(tmp_path, extra_config={"rc_message": {"per_second": 0.5}})
    hs.write_config()
    out = subprocess.run(
        [sys.executable, "-c", _PARSE_CONFIG, str(hs.config_path)],
        check=True,
        capture_output=True,
        text=True,
    )
    parsed = json.loads(out.stdout)
    limits = parsed["limits"]
    assert "rc_invites.per_issuer" in limits and "rc_login.failed_attempts" in limits
    # Deep merge: the override replaced one field and kept the other.
    assert limits.pop("rc_message") == [0.5, 10000]
    # A limiter a newer Synapse adds without us listing it would show its small default.
    assert limits == {key: [1000, 10000] for key in limits}
    assert parsed["federation_domain_whitelist"] == {}
    assert parsed["key_servers"] == 0
    assert parsed["report_stats"] is False
    # The shared secret persists in the workdir, so a new object can still register users.
    assert LocalSynapse(tmp_path).registration_shared_secret == hs.registration_shared_secret
