"""Run the real ``matrix-synapse`` from PyPI as a loopback-only subprocess on SQLite.

Used by the quickstart, and by the end-to-end tests and the benchmarks (their Matrix client,
``tests/matrix_client.py``, lives with the tests). The homeserver is
deliberately cut off from the world: one client listener on 127.0.0.1, no federation
listener, no key servers, no stats reporting, no URL previews.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import copy
import hashlib
import hmac
import io
import os
import secrets
import string
import subprocess
import sys
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from ruamel.yaml import YAML

from claude_bridge.devenv.processes import die_with_parent, free_port
from claude_bridge.files import private_dir, write_private_text

__all__ = ["LocalSynapse", "SynapseError", "die_with_parent", "free_port", "write_private_yaml"]

# Far above anything a test or benchmark does; tests that exercise rate limiting
# tighten individual keys through ``extra_config``.
_GENEROUS = {"per_second": 1000, "burst_count": 10000}

# Every ``rc_*`` key that synapse/config/ratelimiting.py (1.163) parses, in its shape.
# ``rc_federation`` has a different shape and is moot without a federation listener.
_RATE_LIMIT_KEYS: dict[str, Sequence[str]] = {
    "rc_message": (),
    "rc_registration": (),
    "rc_registration_token_validity": (),
    "rc_login": ("address", "account", "failed_attempts"),
    "rc_admin_redaction": (),
    "rc_joins": ("local", "remote"),
    "rc_joins_per_room": (),
    "rc_key_requests": (),
    "rc_3pid_validation": (),
    "rc_invites": ("per_room", "per_user", "per_issuer"),
    "rc_third_party_invite": (),
    "rc_media_create": (),
    "rc_presence": ("per_user",),
    "rc_delayed_event_mgmt": (),
    "rc_room_creation": (),
    "rc_reports": (),
    "rc_user_directory": (),
    "rc_profile": (),
}

_STOP_GRACE_SECONDS = 10.0
_POLL_INTERVAL = 0.05

# Instances with a live process, so an interpreter exit never leaves a Synapse behind.
_live: weakref.WeakSet[LocalSynapse] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for hs in list(_live):
        hs.kill()


class SynapseError(RuntimeError):
    """Synapse failed to start, died, or refused an admin request."""


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _rate_limits() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, subkeys in _RATE_LIMIT_KEYS.items():
        out[key] = {sub: dict(_GENEROUS) for sub in subkeys} if subkeys else dict(_GENEROUS)
    return out


def write_private_yaml(path: Path, data: Mapping[str, Any]) -> None:
    """``data`` as block-style YAML, readable by its owner only."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    buf = io.StringIO()
    yaml.dump(data, buf)
    write_private_text(path, buf.getvalue())


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return f"({path.name}: missing)"
    return f"--- {path.name} (tail) ---\n" + "\n".join(text.splitlines()[-lines:])


class LocalSynapse:
    """A real Synapse homeserver in ``workdir``; data survives ``stop()``/``start()``."""

    def __init__(
        self,
        workdir: Path,
        *,
        server_name: str = "localhost",
        port: int | None = None,
        app_service_config_files: Sequence[Path] = (),
        extra_config: Mapping[str, Any] | None = None,
    ) -> None:
        # 0700: it holds the signing key, the shared secret and the database of access tokens.
        self.workdir = private_dir(Path(workdir).resolve())
        self._server_name = server_name
        # Chosen once so clients and appservice registrations stay valid across restarts.
        self._port = port if port is not None else free_port()
        self.app_service_config_files = [Path(p).resolve() for p in app_service_config_files]
        self.extra_config: dict[str, Any] = dict(extra_config or {})
        self.registration_shared_secret = self._load_or_create_secret()
        self._proc: subprocess.Popen[bytes] | None = None

    # -- properties -------------------------------------------------------------------

    @property
    def server_name(self) -> str:
        return self._server_name

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "homeserver.yaml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "homeserver.log"

    @property
    def stdout_path(self) -> Path:
        return self.workdir / "synapse.stdout.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc else None

    @property
    def pids(self) -> list[int]:
        """Every running process of this homeserver (one here; a subclass may run workers)."""
        return [self.pid] if self.pid else []

    # -- configuration ----------------------------------------------------------------

    def _load_or_create_secret(self) -> str:
        # Persisted so a second LocalSynapse on the same workdir keeps deriving the same
        # macaroon key (Synapse derives it from this secret when none is configured).
        path = self.workdir / "registration_shared_secret"
        if path.exists():
            return path.read_text().strip()
        secret = secrets.token_urlsafe(32)
        write_private_text(path, secret + "\n")
        return secret

    def config(self) -> dict[str, Any]:
        """The full homeserver config, ``extra_config`` merged in last."""
        wd = self.workdir
        base: dict[str, Any] = {
            "server_name": self._server_name,
            "public_baseurl": f"{self.url}/",
            "pid_file": str(wd / "homeserver.pid"),
            "listeners": [
                {
                    "port": self._port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": str(wd / "homeserver.db")}},
            "log_config": str(wd / "log.config"),
            "media_store_path": str(wd / "media_store"),
            "signing_key_path": str(wd / f"{self._server_name}.signing.key"),
            "registration_shared_secret": self.registration_shared_secret,
            "report_stats": False,
            "trusted_key_servers": [],
            # An empty allow-list denies every outbound federation request, so a stray
            # remote alias in a test fails fast instead of reaching the internet.
            "federation_domain_whitelist": [],
            "suppress_key_server_warning": True,
            "serve_server_wellknown": False,
            "enable_registration": False,
            # Minimum bcrypt cost: registering a test user drops from ~0.2 s to a few ms.
            "bcrypt_rounds": 4,
            "enable_metrics": False,
            "url_preview_enabled": False,
            "presence": {"enabled": False},
            "app_service_config_files": [str(p) for p in self.app_service_config_files],
            **_rate_limits(),
        }
        return _deep_merge(base, self.extra_config)

    def _log_config(self) -> dict[str, Any]:
        return {
            "version": 1,
            "formatters": {
                "precise": {
                    "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - "
                    "%(request)s - %(message)s"
                }
            },
            # Unbuffered (unlike Synapse's default) so a crash's last lines are on disk.
            "handlers": {
                "file": {
                    "class": "logging.FileHandler",
                    "formatter": "precise",
                    "filename": str(self.log_path),
                    "encoding": "utf8",
                }
            },
            "loggers": {
                "synapse.access": {"level": "WARNING"},
                "synapse.storage": {"level": "WARNING"},
            },
            "root": {"level": "INFO", "handlers": ["file"]},
            "disable_existing_loggers": False,
        }

    def write_config(self) -> None:
        """Write homeserver.yaml, log.config and (first time only) the signing key."""
        config = self.config()
        write_private_yaml(self.config_path, config)  # it holds the shared secret
        write_private_yaml(Path(config["log_config"]), self._log_config())
        key_path = Path(config["signing_key_path"])
        if not key_path.exists():
            write_private_text(key_path, self._new_signing_key())

    @staticmethod
    def _new_signing_key() -> str:
        # Same format as signedjson.key.write_signing_keys: an ed25519 key file holds just
        # the 32-byte seed, unpadded base64. Doing it here avoids spawning
        # ``--generate-keys`` (a whole extra Synapse import, ~0.8 s) before the first start.
        version = "a_" + "".join(secrets.choice(string.ascii_letters) for _ in range(4))
        seed = base64.b64encode(os.urandom(32)).decode().rstrip("=")
        return f"ed25519 {version} {seed}\n"

    # -- process lifecycle ------------------------------------------------------------

    def _spawn(self) -> subprocess.Popen[bytes]:
        with open(self.stdout_path, "ab") as out:
            out.write(f"\n=== starting synapse at {time.strftime('%H:%M:%S')} ===\n".encode())
            out.flush()
            return subprocess.Popen(
                [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(),
            )

    async def start(self, timeout: float = 60.0) -> None:
        """Start Synapse (again) and return once the client API answers."""
        if self.running:
            return
        self.write_config()
        self._proc = proc = self._spawn()
        _live.add(self)
        deadline = time.monotonic() + timeout
        versions = f"{self.url}/_matrix/client/versions"
        request_timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=request_timeout) as session:
            while True:
                if proc.poll() is not None:
                    self._proc = None
                    raise SynapseError(
                        f"synapse exited with code {proc.returncode} during startup\n"
                        + self.log_tail()
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(versions) as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() > deadline:
                    self.kill()
                    raise SynapseError(f"synapse not ready after {timeout}s\n" + self.log_tail())
                await asyncio.sleep(_POLL_INTERVAL)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if Synapse has not exited within 10 s."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                # A thread, not the loop's child watcher, so any event loop (or a fresh
                # asyncio.run per call from a script) can stop what another one started.
                await asyncio.to_thread(proc.wait, _STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        self._proc = None
        _live.discard(self)

    def kill(self) -> None:
        """SIGKILL Synapse at once (a crash, for fault tests); ``start()`` works afterwards."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        self._proc = None
        _live.discard(self)

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines) + "\n" + _tail(self.stdout_path, lines)

    async def __aenter__(self) -> LocalSynapse:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- admin helpers ----------------------------------------------------------------

    async def register_user(
        self, localpart: str, password: str = "pw", admin: bool = False
    ) -> tuple[str, str]:
        """Register via the shared-secret admin API; returns ``(user_id, access_token)``."""
        url = f"{self.url}/_synapse/admin/v1/register"
        # A session per call: cheap here, and never bound to a loop that has gone away.
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            async with session.get(url) as resp:
                nonce = (await resp.json())["nonce"]
            mac = hmac.new(self.registration_shared_secret.encode(), digestmod=hashlib.sha1)
            for part in (nonce, localpart, password):
                mac.update(part.encode())
                mac.update(b"\x00")
            mac.update(b"admin" if admin else b"notadmin")
            body = {
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            }
            async with session.post(url, json=body) as resp:
                data = await resp.json(content_type=None)
                if resp.status != 200:
                    raise SynapseError(f"register {localpart!r} failed: {resp.status} {data}")
        return data["user_id"], data["access_token"]
