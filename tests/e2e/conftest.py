"""A real Synapse with the bridge's registration loaded, and bridges started against it.

One Synapse per test session (about 2 s to start); each test gets its own bridge on its own
database (``store_url``: SQLite and Postgres) and its own sessions, so tests never see each
other's threads.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from ruamel.yaml import YAML

from claude_bridge.app import Bridge, build
from claude_bridge.config import Config, PermissionLevel, parse_config
from claude_bridge.devenv.synapse import LocalSynapse, free_port
from claude_bridge.registration import build_registration, new_token
from tests.e2e.fake_anthropic import FakeAnthropic
from tests.matrix_client import MatrixTestClient, user_client

pytestmark = pytest.mark.e2e

HOOK_TOKEN = "test-hook-secret"
PAYLOADS = Path(__file__).resolve().parents[2].parent / "shared" / "claude-code" / "hook-payloads"


def loopback_config(
    *, permissions: dict[str, str], logging: dict[str, str], hook_token: str = HOOK_TOKEN
) -> dict[str, Any]:
    """A bridge config dict on free loopback ports, with fresh appservice tokens."""
    as_port, hook_port, synapse_port = free_port(), free_port(), free_port()
    return {
        "homeserver": {"address": f"http://127.0.0.1:{synapse_port}", "domain": "localhost"},
        "appservice": {
            "hostname": "127.0.0.1",
            "port": as_port,
            "address": f"http://127.0.0.1:{as_port}",
            "as_token": new_token(),
            "hs_token": new_token(),
        },
        "hooks": {"listen": f"127.0.0.1:{hook_port}", "tokens": {"laptop": hook_token}},
        "bridge": {"permissions": permissions},
        "logging": logging,
    }


async def synapse_for(config: dict[str, Any], workdir: Path) -> LocalSynapse:
    """A started Synapse on the config's homeserver port with the bridge's registration loaded."""
    registration = workdir / "registration.yaml"
    YAML().dump(build_registration(parse_config(config)), registration)
    port = int(config["homeserver"]["address"].rsplit(":", 1)[1])
    synapse = LocalSynapse(workdir / "synapse", port=port, app_service_config_files=[registration])
    await synapse.start()
    return synapse


@dataclass
class Stack:
    synapse: LocalSynapse
    config: dict[str, Any]
    workdir: Path
    users: dict[str, MatrixTestClient]

    def bridge_config(self, database: str, **overrides: Any) -> Config:
        data = {**self.config, "database": database}
        for key, value in overrides.items():
            data[key] = {**data.get(key, {}), **value}
        return parse_config(data)


@pytest.fixture(scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    workdir = tmp_path_factory.mktemp("stack")
    config = loopback_config(
        permissions={
            "@alice:localhost": PermissionLevel.OPERATOR.value,
            "@admin:localhost": PermissionLevel.ADMIN.value,
            "@victor:localhost": PermissionLevel.VIEWER.value,
        },
        logging={"level": "DEBUG", "format": "console"},
    )
    synapse = await synapse_for(config, workdir)
    users = {
        name: await user_client(synapse, name) for name in ("alice", "admin", "victor", "mallory")
    }
    try:
        yield Stack(synapse, config, workdir, users)
    finally:
        for client in users.values():
            await client.close()
        await synapse.stop()


StartBridge = Callable[..., Awaitable[Bridge]]


async def joined_rooms(stack: Stack, user_id: str) -> list[str]:
    """The rooms a bridge user (a ghost, the bot) has joined, asked as that user through the
    appservice's token: what Synapse says, not what the bridge recorded."""
    as_token = stack.config["appservice"]["as_token"]
    async with MatrixTestClient(stack.synapse.url, user_id, as_token, appservice=True) as client:
        data = await client.request("GET", "/_matrix/client/v3/joined_rooms")
    return sorted(data["joined_rooms"])


@pytest.fixture
async def start_bridge(stack: Stack, store_url: str, tmp_path: Path) -> AsyncIterator[StartBridge]:
    """Start bridges in this event loop on the test's store; all are stopped at the end."""
    started: list[Bridge] = []

    async def start(**overrides: Any) -> Bridge:
        bridge = build(stack.bridge_config(store_url, **overrides), tmp_path)
        try:
            await bridge.start()
        except BaseException:
            # A bridge that failed half-way must still free its ports for the next test.
            await bridge.stop()
            raise
        started.append(bridge)
        return bridge

    yield start
    for bridge in reversed(started):
        await bridge.stop()


@pytest.fixture
async def bridge(start_bridge: StartBridge) -> Bridge:
    return await start_bridge()


@pytest.fixture
async def model() -> AsyncIterator[FakeAnthropic]:
    """The scripted model the real Claude Code CLI talks to (``ANTHROPIC_BASE_URL``)."""
    fake = FakeAnthropic()
    await fake.start()
    yield fake
    await fake.stop()


class HookPoster:
    """Claude Code's side: POSTs hook inputs like an ``http`` hook does."""

    def __init__(self, url: str, token: str = HOOK_TOKEN) -> None:
        self.url = url
        self.token = token
        self.http = aiohttp.ClientSession()

    async def post(
        self, payload: Any, *, token: str | None = None, raw: bytes | None = None, **headers: str
    ) -> tuple[int, Any]:
        hdrs = {"Content-Type": "application/json", **headers}
        tok = self.token if token is None else token
        if tok:
            hdrs["Authorization"] = f"Bearer {tok}"
        data = raw if raw is not None else (payload if isinstance(payload, bytes) else None)
        kwargs: dict[str, Any] = {"data": data} if data is not None else {"json": payload}
        async with self.http.post(f"{self.url}/claude/v1/hooks", headers=hdrs, **kwargs) as resp:
            try:
                body = await resp.json(content_type=None)
            except ValueError:
                body = await resp.text()
            return resp.status, body

    async def close(self) -> None:
        await self.http.close()


@pytest.fixture
async def hooks(stack: Stack) -> AsyncIterator[HookPoster]:
    poster = HookPoster(f"http://{stack.config['hooks']['listen']}")
    yield poster
    await poster.close()


def new_session() -> str:
    return str(uuid.uuid4())


def hook_payload(name: str, session_id: str, **fields: Any) -> dict[str, Any]:
    """A captured payload from shared/claude-code, moved to ``session_id``."""
    import json

    data = json.loads((PAYLOADS / f"{name}.json").read_text())
    data["session_id"] = session_id
    data.update(fields)
    return data
