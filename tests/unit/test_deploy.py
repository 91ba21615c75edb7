"""What can be checked of the Docker deployment without a Docker engine.

The compose file and the Dockerfile parse; every file they copy or mount exists; every
``claude-bridge`` command they run parses with the real CLI; every ``${VAR}`` is in .env.example;
the ``CLAUDE_BRIDGE__…`` environment makes a valid config whose ports, hosts and paths agree with
the services, the published ports and the Dockerfile; the registration the bridge writes is the
file Synapse is told to load; health checks ask routes that exist.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from ruamel.yaml import YAML

from claude_bridge.cli import build_parser
from claude_bridge.config import AppserviceConfig, HooksConfig, load_config
from claude_bridge.config.example import render_example
from claude_bridge.hooks.server import HookServer
from claude_bridge.registration import build_registration

ROOT = Path(__file__).resolve().parents[2]
_VAR = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def _interpolate(text: str, env: dict[str, str]) -> str:
    def value(m: re.Match[str]) -> str:
        name, kind, default = m.groups()
        if name in env:
            return env[name]
        assert kind == "-", f"${{{name}}} is neither in .env.example nor has a default"
        return default

    return _VAR.sub(value, text)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    text = (ROOT / "docker-compose.yml").read_text()
    return YAML(typ="safe").load(_interpolate(text, _env_example()))


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the final logical lines, continuations joined."""
    out, pending = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += line.removesuffix("\\").strip() + " "
        if not line.endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def _argv(value: str | list[str]) -> list[str]:
    return value if isinstance(value, list) else shlex.split(value)


def _cli_parses(argv: list[str]) -> None:
    assert argv[0] == "claude-bridge", argv
    build_parser().parse_args(argv[1:])  # exits (fails the test) on an unknown command/option


def test_every_variable_is_in_env_example() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    env = _env_example()
    for name, kind, _ in _VAR.findall(text):
        assert name in env or kind == "-", name


def test_files_copied_or_mounted_exist(compose: dict[str, Any]) -> None:
    for word, args in _dockerfile():
        if word == "COPY" and "--from=" not in args:
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}"
    for name, service in compose["services"].items():
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").is_file(), name
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {mount}"
            else:
                assert source in compose["volumes"], f"{name}: volume {source} not declared"
        for net in service.get("networks", []):
            assert net in compose["networks"], f"{name}: network {net}"
    entrypoint = ROOT / "docker" / "entrypoint.sh"
    assert os.access(entrypoint, os.X_OK)
    assert os.access(ROOT / "docker" / "synapse" / "init.sh", os.X_OK)


def test_the_image_runs_as_a_user_on_slim_python() -> None:
    lines = _dockerfile()
    assert [a for w, a in lines if w == "FROM"][-1].endswith("-slim")
    assert [a for w, a in lines if w == "USER"] == ["bridge"]
    assert ("VOLUME", "/data") in lines
    exposed = {int(p) for w, a in lines if w == "EXPOSE" for p in a.split()}
    assert exposed == {AppserviceConfig().port, HooksConfig().port}


def test_every_claude_bridge_command_parses(compose: dict[str, Any]) -> None:
    import json

    for word, args in _dockerfile():
        if word in ("CMD", "HEALTHCHECK"):
            argv = json.loads(args[args.index("[") :])
            _cli_parses(argv[1:] if argv[0] == "CMD" else argv)
    services = compose["services"]
    setup = services["bridge-setup"]
    _cli_parses(_argv(setup["entrypoint"]) + _argv(setup["command"]))
    _cli_parses(_argv(services["bridge"]["command"]))
    _cli_parses(_argv(services["bridge"]["healthcheck"]["test"])[1:])
    script = (ROOT / "docker" / "entrypoint.sh").read_text()
    for match in re.findall(r"^\s*(claude-bridge [\w-]+ .*)$", script, re.M):
        _cli_parses(shlex.split(match.replace('"$CONFIG"', "/data/config.yaml")))


def _bridge_config(compose: dict[str, Any], tmp_path: Path) -> Any:
    env = compose["services"]["bridge"]["environment"]
    assert env == compose["services"]["bridge-setup"]["environment"]
    path = tmp_path / "config.yaml"
    path.write_text(render_example())
    return load_config(path, {k: str(v) for k, v in env.items()})


def test_environment_makes_a_config_that_matches_the_services(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    config = _bridge_config(compose, tmp_path)
    services = compose["services"]
    # Ports: the config defaults are what the image exposes and compose publishes.
    assert config.appservice.port == AppserviceConfig().port
    assert config.hooks.port == HooksConfig().port
    assert config.hooks.host == "0.0.0.0" and config.appservice.hostname == "0.0.0.0"
    published = [p.rsplit(":", 1)[1] for p in services["bridge"]["ports"]]
    assert published == [str(config.hooks.port)]
    # Synapse reaches the bridge by its service name, on a network they share.
    as_url = urlsplit(config.appservice.address)
    assert as_url.hostname == "bridge" and as_url.port == config.appservice.port
    shared = set(services["bridge"]["networks"]) & set(services["synapse"]["networks"])
    assert shared
    hs_url = urlsplit(config.homeserver.address)
    assert hs_url.hostname == "synapse"
    assert services["synapse"]["ports"][0].endswith(f":{hs_url.port}")
    assert (
        config.homeserver.domain == services["synapse-init"]["environment"]["SYNAPSE_SERVER_NAME"]
    )
    # The database is the postgres service's.
    db_url = urlsplit(config.database)
    pg = services["postgres"]["environment"]
    assert db_url.hostname == "postgres" and db_url.username == pg["POSTGRES_USER"]
    assert db_url.password == pg["POSTGRES_PASSWORD"] and db_url.path == f"/{pg['POSTGRES_DB']}"
    assert set(services["postgres"]["networks"]) & set(services["bridge"]["networks"])
    # Postgres has no published port and only an internal network.
    assert "ports" not in services["postgres"]
    assert all(compose["networks"][n].get("internal") for n in services["postgres"]["networks"])
    assert config.hooks.tokens["default"] == _env_example()["CLAUDE_BRIDGE_TOKEN"]
    assert build_registration(config)["url"] == "http://bridge:29340"


def _volume_path(service: dict[str, Any], path: str) -> tuple[str, str]:
    """(volume or host dir, path inside it) of a container path."""
    for mount in service.get("volumes", []):
        source, target = mount.split(":")[:2]
        if path == target or path.startswith(target.rstrip("/") + "/"):
            return source, path[len(target) :].lstrip("/")
    raise AssertionError(f"{path} is on no volume")


def test_synapse_loads_the_registration_the_bridge_writes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    setup_args = build_parser().parse_args(
        _argv(services["bridge-setup"]["entrypoint"])[1:]
        + _argv(services["bridge-setup"]["command"])
    )
    written = _volume_path(services["bridge-setup"], str(setup_args.registration))
    # init.sh copies it from the shared volume to where Synapse's extra config points.
    init = services["synapse-init"]
    script_dir, script = _volume_path(init, _argv(init["entrypoint"])[-1])
    text = (ROOT / script_dir / script).read_text()
    source, target = re.search(r"install .*\\\n\s*(\S+) (\S+)", text).groups()  # type: ignore[union-attr]
    assert _volume_path(init, source) == written
    assert "/start.py generate" in text
    synapse = services["synapse"]
    config_paths = [
        a.split("=", 1)[1] for a in synapse["command"] if a.startswith("--config-path=")
    ]
    assert synapse["command"][0] == "run" and config_paths[-1] == "/data/homeserver.yaml"
    extra_dir, extra = _volume_path(synapse, config_paths[0])
    loaded = YAML(typ="safe").load((ROOT / extra_dir / extra).read_text())
    assert [_volume_path(synapse, p) for p in loaded["app_service_config_files"]] == [
        _volume_path(init, target)
    ]


def test_start_order_and_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    bridge = services["bridge"]["depends_on"]
    assert bridge["postgres"]["condition"] == "service_healthy"
    assert bridge["synapse"]["condition"] == "service_healthy"
    assert bridge["bridge-setup"]["condition"] == "service_completed_successfully"
    assert services["synapse"]["depends_on"]["synapse-init"]["condition"] == (
        "service_completed_successfully"
    )
    for name, wants in bridge.items():
        if wants["condition"] == "service_healthy":
            assert "healthcheck" in services[name], name
    assert "localhost:8008/health" in " ".join(services["synapse"]["healthcheck"]["test"])
    # `claude-bridge health` asks GET /health on the hook server: a route the server has.
    routes = {
        (r.method, r.resource.canonical)
        for r in HookServer(HooksConfig(), ingest=None).app.router.routes()  # type: ignore[arg-type]
        if r.resource is not None
    }
    assert ("GET", "/health") in routes
