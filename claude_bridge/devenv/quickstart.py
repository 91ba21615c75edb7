"""A working bridge on one machine: a local Synapse (SQLite, loopback) and the bridge on its
embedded SQLite store, registered and running. Used by ``scripts/quickstart``.

Everything lives in one folder (default ``./data``); running it again reuses it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import sys
from pathlib import Path

from ruamel.yaml import YAML

from claude_bridge.config import load_config, update_config_file
from claude_bridge.devenv.synapse import LocalSynapse, SynapseError
from claude_bridge.example_config import render_example
from claude_bridge.registration import generate_registration

SYNAPSE_PORT = 8008


def prepare(data: Path, user: str, password: str) -> Path:
    """Write config and registration on first run; return the config path."""
    data.mkdir(parents=True, exist_ok=True)
    config_path = data / "config.yaml"
    if not config_path.exists():
        config_path.write_text(render_example())
        os.chmod(config_path, 0o600)
        update_config_file(
            config_path,
            {
                ("homeserver", "address"): f"http://127.0.0.1:{SYNAPSE_PORT}",
                # Claude Code runs on this machine: its transcripts may fill gaps (catch-up).
                ("hooks", "tokens"): {
                    "local": {"secret": secrets.token_urlsafe(32), "local": True}
                },
                ("bridge", "permissions"): {f"@{user}:localhost": "admin"},
                ("database",): "sqlite:claude-bridge.db",
            },
        )
        generate_registration(config_path, data / "registration.yaml")
    (data / "login.txt").write_text(f"user: @{user}:localhost\npassword: {password}\n")
    return config_path


async def run(data: Path, user: str, password: str) -> int:
    config_path = prepare(data, user, password)
    config = load_config(config_path)
    synapse = LocalSynapse(
        data / "synapse", port=SYNAPSE_PORT, app_service_config_files=[data / "registration.yaml"]
    )
    await synapse.start()
    try:
        await synapse.register_user(user, password, admin=True)
    except SynapseError as e:
        if "User ID already taken" not in str(e) and "M_USER_IN_USE" not in str(e):
            raise
    bridge = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "claude_bridge", "run", "-c", str(config_path), cwd=data
    )
    token = next(iter(config.hooks.secrets().values()))
    url = f"http://{config.hooks.listen}"
    print(
        f"""
claude-bridge is running.
  Synapse:     {synapse.url}   (log in as @{user}:localhost / {password}, e.g. with Element)
  Hook server: {url}
  Data:        {data}

Point Claude Code at it (in another terminal):
  export CLAUDE_BRIDGE_URL={url}
  export CLAUDE_BRIDGE_TOKEN={token}
  .venv/bin/claude-bridge install-hooks --user --url {url} --token "$CLAUDE_BRIDGE_TOKEN"

Every Claude Code session then gets a room #claude-thread-<session>:localhost, and
@{user}:localhost is invited to it. Ctrl-C stops the bridge and Synapse.
""",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(bridge.wait())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if bridge.returncode is None:
        bridge.terminate()
    code = await waiter
    stopper.cancel()
    with contextlib.suppress(Exception):
        await synapse.stop()
    return 0 if stop.is_set() else int(code)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default=None)
    args = parser.parse_args()
    data = args.data.resolve()
    saved = data / "login.txt"
    password = args.password
    if password is None and saved.exists():
        password = YAML(typ="safe").load(saved.read_text()).get("password")
    return asyncio.run(run(data, args.user, password or secrets.token_urlsafe(12)))


if __name__ == "__main__":
    raise SystemExit(main())
