"""A working bridge on one machine: a local Synapse (SQLite, loopback) and the bridge on its
embedded SQLite store, registered and running. Used by ``scripts/quickstart``.

Everything lives in one private folder (default ``./data``); running it again reuses it, with
the ports it chose the first time. It runs in the foreground: Ctrl-C stops the bridge and Synapse,
and both die with it if it is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from claude_bridge.config import Config, load_config, update_config_file
from claude_bridge.config.example import render_example
from claude_bridge.devenv.datadir import (
    QuickstartError,
    clear_leftovers,
    hold_folder,
    saved_login,
    write_login,
)
from claude_bridge.devenv.processes import describe_port, next_free_port, port_holder, port_is_free
from claude_bridge.devenv.synapse import LocalSynapse, SynapseError, die_with_parent
from claude_bridge.registration import generate_registration

READY_TIMEOUT = 120.0
"""Seconds the bridge gets to report ready (a loaded laptop, a first start that migrates)."""


@dataclass(frozen=True)
class Service:
    name: str  # as the user reads it
    key: str  # attribute of Ports
    flag: str
    default: int
    movable: bool  # nobody outside this folder knows the port: move it when it is taken


SERVICES = (
    Service("Synapse", "synapse", "--port", 8008, movable=False),
    Service(
        "the appservice listener (Synapse → bridge)", "appservice", "--appservice-port", 29340, True
    ),
    Service("the hook server (Claude Code → bridge)", "hooks", "--hook-port", 29341, False),
)


@dataclass(frozen=True)
class Ports:
    synapse: int
    appservice: int
    hooks: int

    @classmethod
    def of(cls, config: Config) -> Ports:
        synapse = urllib.parse.urlsplit(config.homeserver.address).port or 80
        return cls(synapse, config.appservice.port, config.hooks.port)

    def config_updates(self) -> dict[tuple[str, ...], Any]:
        return {
            ("homeserver", "address"): f"http://127.0.0.1:{self.synapse}",
            ("appservice", "port"): self.appservice,
            ("appservice", "address"): f"http://127.0.0.1:{self.appservice}",
            ("hooks", "listen"): f"127.0.0.1:{self.hooks}",
        }


def choose_ports(
    saved: Ports | None, asked: dict[str, int | None], defaults: Ports | None = None
) -> tuple[Ports, list[str]]:
    """Each service's port: the one asked for (it must be free), else the one an earlier run
    chose, else the default or the next free one above it. Returns notes on what moved."""
    defaults = defaults or Ports(**{s.key: s.default for s in SERVICES})
    chosen: dict[str, int] = {}
    notes = []
    for service in SERVICES:
        want = asked.get(service.key)
        if want is not None:
            if not port_is_free(want):
                raise QuickstartError(
                    f"{describe_port(want)}, and {service.flag} {want} asks for it for "
                    f"{service.name}: stop that process or choose another port"
                )
            chosen[service.key] = want
            continue
        start = getattr(defaults if saved is None else saved, service.key)
        if saved is not None and not service.movable and not port_is_free(start):
            free = next_free_port(start + 1, set(chosen.values()))
            raise QuickstartError(
                f"{describe_port(start)}, where an earlier run put {service.name}: stop that "
                f"process, or pass {service.flag} {free} to move it"
                + (
                    " (then run install-hooks again with the new URL)"
                    if service.key == "hooks"
                    else ""
                )
            )
        port = next_free_port(start, set(chosen.values()))
        if port != start:
            notes.append(f"{describe_port(start)}: {service.name} uses port {port} instead")
        chosen[service.key] = port
    return Ports(**chosen), notes


def prepare(data: Path, user: str, asked: dict[str, int | None]) -> tuple[Path, list[str]]:
    """Write config and registration on the first run, apply port changes on later ones;
    returns the config path and what to tell the user."""
    config_path = data / "config.yaml"
    notes: list[str] = []
    if not config_path.exists():
        ports, notes = choose_ports(None, asked)
        config_path.write_text(render_example())
        os.chmod(config_path, 0o600)
        update_config_file(
            config_path,
            {
                # Claude Code runs on this machine: its transcripts may fill gaps (catch-up).
                ("hooks", "tokens"): {
                    "local": {"secret": secrets.token_urlsafe(32), "local": True}
                },
                ("bridge", "permissions"): {f"@{user}:localhost": "admin"},
                ("database",): "sqlite:claude-bridge.db",
                **ports.config_updates(),
            },
        )
        generate_registration(config_path, data / "registration.yaml")
        return config_path, notes
    config = load_config(config_path)
    notes += clear_leftovers(data, config)
    saved = Ports.of(config)
    ports, moved = choose_ports(saved, asked)
    notes += moved
    if ports != saved:
        update_config_file(config_path, ports.config_updates())
    if ports.appservice != saved.appservice:
        generate_registration(config_path, data / "registration.yaml")  # Synapse's side of it
    return config_path, notes


# --- running --------------------------------------------------------------------------------------


def _check_owner(port: int, pid: int | None, what: str) -> None:
    """Our process must be the one listening: a port taken between the check and the start
    would otherwise have us talk to someone else's server."""
    holder = port_holder(port)
    if holder is not None and holder.pid != pid:
        raise QuickstartError(f"{what} did not get port {port}: {describe_port(port)}")


async def _wait_ready(
    bridge: asyncio.subprocess.Process, config: Config, stop: asyncio.Event
) -> None:
    url = f"http://127.0.0.1:{config.hooks.port}/health"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT
    last = "no answer"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while True:
            if bridge.returncode is not None:
                raise QuickstartError(
                    f"the bridge exited with code {bridge.returncode} while starting "
                    "(its log is above)"
                )
            if stop.is_set():
                raise QuickstartError("stopped before the bridge was ready")
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        _check_owner(config.hooks.port, bridge.pid, "the bridge")
                        return
                    last = f"{resp.status} {await resp.text()}"
            except (aiohttp.ClientError, TimeoutError) as e:
                last = repr(e)
            if loop.time() > deadline:
                raise QuickstartError(
                    f"the bridge is not ready after {READY_TIMEOUT:.0f} s: {last}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)


def banner(data: Path, config: Config, user_id: str, synapse: LocalSynapse, login: Path) -> str:
    url = f"http://{config.hooks.listen}"
    token = next(iter(config.hooks.secrets().values()))
    claude_bridge = Path(sys.executable).parent / "claude-bridge"
    return f"""
claude-bridge is running (in the foreground: Ctrl-C stops the bridge and Synapse).
  Synapse:     {synapse.url}   (log in as {user_id}, password in {login})
  Hook server: {url}
  Data:        {data}   (config.yaml, registration.yaml, {login.name})
  Check it:    {claude_bridge} doctor -c {data / "config.yaml"} -r {data / "registration.yaml"}

Point Claude Code at it (in another terminal):
  export CLAUDE_BRIDGE_URL={url}
  export CLAUDE_BRIDGE_TOKEN={token}
  {claude_bridge} install-hooks --user --url "$CLAUDE_BRIDGE_URL" --token "$CLAUDE_BRIDGE_TOKEN"

Every Claude Code session then gets a room #claude-thread-<session>:localhost, and
{user_id} is invited to it.
"""


async def run(data: Path, config_path: Path, user: str, password: str) -> int:
    config = load_config(config_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ports = Ports.of(config)
    synapse = LocalSynapse(
        data / "synapse", port=ports.synapse, app_service_config_files=[data / "registration.yaml"]
    )
    bridge: asyncio.subprocess.Process | None = None
    try:
        try:
            await synapse.start()
        except SynapseError as e:
            raise QuickstartError(f"Synapse did not start:\n{e}") from None
        _check_owner(ports.synapse, synapse.pid, "Synapse")
        user_id = f"@{user}:{config.homeserver.domain}"
        try:
            await synapse.register_user(user, password, admin=True)
        except SynapseError as e:
            if "User ID already taken" not in str(e) and "M_USER_IN_USE" not in str(e):
                raise QuickstartError(str(e)) from None
        login = write_login(data, user_id, password, synapse.url)
        bridge = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "claude_bridge",
            "run",
            "-c",
            str(config_path),
            cwd=data,
            preexec_fn=die_with_parent(),  # a SIGKILLed quickstart takes the bridge with it
        )
        await _wait_ready(bridge, config, stop)
        print(banner(data, config, user_id, synapse, login), flush=True)
        waiter = asyncio.ensure_future(bridge.wait())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not stop.is_set():
            print(f"quickstart: the bridge exited with code {bridge.returncode}", file=sys.stderr)
            return int(bridge.returncode or 1)
        return 0
    finally:
        if bridge is not None and bridge.returncode is None:
            bridge.terminate()
            try:
                await asyncio.wait_for(bridge.wait(), 30)
            except TimeoutError:
                bridge.kill()
                await bridge.wait()
        await synapse.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data"), help="the folder (made 0700)")
    parser.add_argument("--user", default="admin", help="the Matrix user to create (an admin)")
    parser.add_argument("--password", default=None, help="its password (default: generated)")
    for service in SERVICES:
        parser.add_argument(
            service.flag,
            type=int,
            dest=service.key,
            help=f"port of {service.name} (default: the earlier run's, or {service.default} "
            "or the next free one)",
        )
    args = parser.parse_args(argv)
    data = args.data.resolve()
    try:
        data.mkdir(parents=True, exist_ok=True)
        os.chmod(data, 0o700)  # tokens, the registration and the login live here
        folder = hold_folder(data)
    except QuickstartError as e:
        print(f"quickstart: {e}", file=sys.stderr)
        return 1
    try:
        asked = {s.key: getattr(args, s.key) for s in SERVICES}
        config_path, notes = prepare(data, args.user, asked)
        for note in notes:
            print(f"quickstart: {note}", flush=True)
        password = args.password or saved_login(data).get("password") or secrets.token_urlsafe(12)
        return asyncio.run(run(data, config_path, args.user, password))
    except QuickstartError as e:
        print(f"quickstart: {e}", file=sys.stderr)
        return 1
    finally:
        os.close(folder)


if __name__ == "__main__":
    raise SystemExit(main())
