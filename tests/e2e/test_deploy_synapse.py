"""The Compose file's Synapse wiring, run with the real Synapse (no Docker here).

What the ``matrixdotorg/synapse`` image does for us, step by step: its ``generate`` mode (the
``synapse.app.homeserver --generate-config`` call its start script makes), run twice as
``docker/synapse/init.sh`` does on every start; ``claude-bridge setup`` writing the registration;
the copy init.sh installs; and Synapse started with ``docker/synapse/appservice.yaml`` as an extra
``--config-path``. Synapse must then accept the bridge's ``as_token``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from ruamel.yaml import YAML

from claude_bridge.config import load_config
from claude_bridge.provision import provision
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _generate(data: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "synapse.app.homeserver",
            "--server-name",
            "localhost",
            "--report-stats",
            "no",
            "--config-path",
            str(data / "homeserver.yaml"),
            "--config-directory",
            str(data),
            "--data-directory",
            str(data),
            "--generate-config",
            "--open-private-ports",
        ],
        check=True,
        capture_output=True,
        timeout=120,
        cwd=data,
    )


async def test_synapse_loads_the_registration_through_the_extra_config_file(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _generate(data)
    generated = (data / "homeserver.yaml").read_text()
    _generate(data)  # init.sh runs it on every start: it must leave the config alone
    assert (data / "homeserver.yaml").read_text() == generated
    assert "app_service_config_files" not in YAML(typ="safe").load(generated)

    port, as_port = free_port(), free_port()
    env = {
        "CLAUDE_BRIDGE__HOMESERVER__ADDRESS": f"http://127.0.0.1:{port}",
        "CLAUDE_BRIDGE__APPSERVICE__ADDRESS": f"http://127.0.0.1:{as_port}",
        "CLAUDE_BRIDGE__HOOKS__TOKENS__DEFAULT": "a-hook-token-long-enough",
    }
    config_path, registration = tmp_path / "bridge" / "config.yaml", tmp_path / "reg.yaml"
    provision(config_path, registration, env)
    # init.sh: `install … /registration/claude-registration.yaml /data/claude-bridge-registration.yaml`
    (data / "claude-bridge-registration.yaml").write_text(registration.read_text())
    extra = tmp_path / "appservice.yaml"
    extra.write_text(
        (ROOT / "docker" / "synapse" / "appservice.yaml").read_text().replace("/data/", f"{data}/")
    )
    # Only for this test: loopback instead of the generated listener on every address.
    loopback = tmp_path / "loopback.yaml"
    YAML().dump(
        {
            "listeners": [
                {
                    "port": port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "resources": [{"names": ["client"]}],
                }
            ],
            "trusted_key_servers": [],
            "federation_domain_whitelist": [],
        },
        loopback,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "synapse.app.homeserver",
        f"--config-path={extra}",
        f"--config-path={data / 'homeserver.yaml'}",
        f"--config-path={loopback}",
        cwd=data,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    config = load_config(config_path, env)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(600):  # bounded: about 60 s for Synapse to come up
                assert proc.returncode is None, "synapse exited"
                try:
                    async with http.get(f"http://127.0.0.1:{port}/_matrix/client/versions") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            async with http.get(
                f"http://127.0.0.1:{port}/_matrix/client/v3/account/whoami",
                headers={"Authorization": f"Bearer {config.appservice.as_token}"},
            ) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["user_id"] == "@claudebot:localhost"
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
