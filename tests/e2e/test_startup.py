"""Start-up checks, each with its own exit code: the bridge as a process against a real Synapse.

docs/configuration.md promises distinct exit codes for fatal start-up errors: 10 a bad config,
11 the homeserver rejects ``as_token`` (``test_foundation.py``), 12 another appservice claims the
namespace, 13 Synapse cannot reach the appservice, 14 the database (``test_fault_failover.py``);
and a bridge started before its homeserver waits for it, taking hooks meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from claude_bridge.config import parse_config
from claude_bridge.devenv.synapse import LocalSynapse, free_port
from claude_bridge.registration import build_registration, new_token
from tests.e2e.conftest import loopback_config, synapse_for
from tests.e2e.processes import (
    HOOK_TOKEN,
    BridgeProcess,
    Burst,
    burst_problems,
    read_back,
    until_drained,
)
from tests.matrix_client import user_client

pytestmark = pytest.mark.e2e


def bridge_config(tmp_path: Path, **names: str) -> dict[str, Any]:
    """A bridge config on free loopback ports and its own SQLite file; ``names`` set the
    appservice id and the namespaces (``id``, ``bot_username``, ``ghost_prefix``…)."""
    config = loopback_config(
        permissions={"@alice:localhost": "operator"},
        logging={"level": "INFO", "format": "json"},
        hook_token=HOOK_TOKEN,
    )
    config["database"] = f"sqlite:{tmp_path / 'bridge.db'}"
    for key in ("id", "bot_username"):
        if key in names:
            config["appservice"][key] = names[key]
    for key in ("ghost_prefix", "alias_prefix"):
        if key in names:
            config["bridge"][key] = names[key]
    return config


async def exit_code(config: dict[str, Any], workdir: Path) -> tuple[int, BridgeProcess]:
    bridge = await BridgeProcess(config, workdir).start()
    try:
        return await bridge.wait_exit(120), bridge
    finally:
        await bridge.close()


async def test_a_bad_config_exits_10_and_names_the_key(tmp_path: Path) -> None:
    config = bridge_config(tmp_path)
    config["hooks"]["listen"] = "nowhere"
    code, bridge = await exit_code(config, tmp_path)
    assert code == 10, bridge.tail()
    assert bridge.logged("hooks.listen"), bridge.tail()
    assert not (tmp_path / "bridge.db").exists()  # stopped before it touched anything


# --- one Synapse, two bridges' registrations and a squatter's --------------------------------

CLASHING = {"id": "claude"}  # the default names: claudebot, claude-…, claude-thread-…
UNREACHABLE = {
    "id": "unreachable",
    "bot_username": "lostbot",
    "ghost_prefix": "lost-",
    "alias_prefix": "lost-thread-",
}
SQUATTER = {
    "id": "squatter",
    "url": None,
    "as_token": new_token(),
    "hs_token": new_token(),
    "sender_localpart": "squatterbot",
    "rate_limited": False,
    # Another bridge claiming everything that starts with "claude", the bot included.
    "namespaces": {
        "users": [{"regex": "@claude.*:localhost", "exclusive": True}],
        "aliases": [],
        "rooms": [],
    },
}


@pytest.fixture(scope="module")
async def crowded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    """A Synapse with the registrations of a clashing and an unreachable bridge, and the
    squatter's; the two bridge configs point at it."""
    workdir = tmp_path_factory.mktemp("crowded")
    synapse = LocalSynapse(workdir / "synapse")
    configs = {
        "clashing": bridge_config(workdir / "clashing", **CLASHING),
        "unreachable": bridge_config(workdir / "unreachable", **UNREACHABLE),
    }
    # Synapse pings the unreachable bridge at an address where nothing listens.
    configs["unreachable"]["appservice"]["address"] = f"http://127.0.0.1:{free_port()}"
    files = []
    for name, config in configs.items():
        (workdir / name).mkdir()
        config["homeserver"]["address"] = synapse.url
        files.append(workdir / f"{name}.json")  # JSON is YAML
        files[-1].write_text(json.dumps(build_registration(parse_config(config))))
    files.append(workdir / "squatter.json")
    files[-1].write_text(json.dumps(SQUATTER))
    synapse.app_service_config_files = files
    await synapse.start()
    try:
        yield {"synapse": synapse, "workdir": workdir, **configs}
    finally:
        await synapse.stop()


async def test_another_appservice_claiming_the_namespace_exits_12(
    crowded: dict[str, Any],
) -> None:
    workdir = crowded["workdir"] / "clashing"
    code, bridge = await exit_code(crowded["clashing"], workdir)
    assert code == 12, bridge.tail()
    assert bridge.logged("another appservice's exclusive namespace"), bridge.tail()
    assert not bridge.logged("bridge ready")


async def test_an_appservice_address_synapse_cannot_reach_exits_13(
    crowded: dict[str, Any],
) -> None:
    workdir = crowded["workdir"] / "unreachable"
    code, bridge = await exit_code(crowded["unreachable"], workdir)
    assert code == 13, bridge.tail()
    assert bridge.logged("the homeserver cannot reach the appservice at"), bridge.tail()
    assert bridge.logged("self-ping failed, trying again")  # not given up at the first failure
    assert not bridge.logged("bridge ready")


# --- a homeserver that is not up yet --------------------------------------------------------


async def test_a_bridge_started_before_its_homeserver_waits_and_takes_hooks(
    tmp_path: Path,
) -> None:
    config = bridge_config(tmp_path)
    bridge = await BridgeProcess(config, tmp_path).start()
    synapse: LocalSynapse | None = None
    try:
        await bridge.wait_for_log("waiting for the homeserver", timeout=120)
        # Hooks are stored (and acknowledged) while the homeserver is still away.
        burst = Burst(bridge.hook_url, 1, 2)
        await burst.run()
        assert burst.acked == {(0, 0), (0, 1)}
        assert bridge.returncode is None and not bridge.logged("bridge ready")

        synapse = await synapse_for(config, tmp_path)
        await bridge.wait_ready(timeout=120)
        # The default event loop: uvloop, which the project depends on (event_loop.py).
        assert '"event_loop": "uvloop"' in bridge.logged("bridge ready")[0]
        await until_drained(config["database"], "the hooks taken while waiting delivered", 120)
        alice = await user_client(synapse, "alice")
        try:
            seen = await read_back(alice, burst)
        finally:
            await alice.close()
        assert not burst_problems(burst, seen)
        bridge.terminate()
        assert await bridge.wait_exit() == 0
    finally:
        await bridge.close()
        if synapse is not None:
            await synapse.stop()
