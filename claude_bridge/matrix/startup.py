"""Start-up checks against the homeserver, each failing with an actionable message."""

from __future__ import annotations

import asyncio
import time

from claude_bridge.config import Config
from claude_bridge.errors import ExitCode, FatalError
from claude_bridge.log import get_logger
from claude_bridge.matrix.client import MatrixClient, MatrixError

log = get_logger("startup")


async def wait_for_homeserver(
    client: MatrixClient, address: str, timeout: float | None = None
) -> None:
    """Poll ``/versions`` until the homeserver answers (it may still be starting)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.2
    warned = False
    while True:
        try:
            await client.versions()
            return
        except MatrixError as e:
            if e.status in (401, 403):
                # It answered: it is up, it just does not like our token (check_appservice says so).
                return
            if deadline is not None and time.monotonic() > deadline:
                raise FatalError(
                    f"homeserver at {address} did not answer: {e}. Check homeserver.address.",
                    ExitCode.APPSERVICE_UNREACHABLE,
                ) from None
            if not warned:
                log.warning("waiting for the homeserver", address=address, error=str(e))
                warned = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


PING_TRIES = 5


async def _ping(client: MatrixClient, appservice_id: str) -> int:
    """Self-ping, retried briefly: Synapse sometimes answers a first ping with a spurious 502
    (seen: "AlreadyCalled" from its HTTP client) although the appservice is reachable."""
    for attempt in range(1, PING_TRIES + 1):
        try:
            return await client.ping(appservice_id, txn_id=f"startup-{time.time_ns()}")
        except MatrixError as e:
            if attempt == PING_TRIES or e.status not in (502, 504):
                raise
            log.warning("self-ping failed, trying again", attempt=attempt, error=str(e))
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


async def check_appservice(client: MatrixClient, config: Config) -> None:
    """``whoami`` as the bot, register it, and have the homeserver ping us back."""
    bot = client.bot_mxid
    try:
        await client.whoami()
    except MatrixError as e:
        if e.errcode == "M_UNKNOWN_TOKEN" or e.status == 401:
            raise FatalError(
                "the homeserver rejected appservice.as_token: the registration is not loaded or "
                "its tokens differ from the config. Add the registration file to Synapse's "
                "app_service_config_files and restart Synapse, or regenerate it with "
                "'claude-bridge generate-registration'.",
                ExitCode.AS_TOKEN_REJECTED,
            ) from None
        if e.errcode in ("M_EXCLUSIVE", "M_FORBIDDEN") or e.status == 403:
            raise FatalError(
                f"the homeserver does not let this appservice act as {bot}: {e}. Another "
                "appservice may claim the same namespace, or appservice.bot_username and "
                "homeserver.domain do not match the registration.",
                ExitCode.NAMESPACE_CLASH,
            ) from None
        raise
    try:
        await client.register(config.appservice.bot_username)
    except MatrixError as e:
        if e.errcode == "M_EXCLUSIVE":
            raise FatalError(
                f"{bot} is in another appservice's exclusive namespace: {e}",
                ExitCode.NAMESPACE_CLASH,
            ) from None
        raise
    try:
        ms = await _ping(client, config.appservice.id)
    except MatrixError as e:
        raise FatalError(
            f"the homeserver cannot reach the appservice at {config.appservice.address}: {e}. "
            "Check appservice.address (it must be reachable from Synapse) and that "
            "appservice.hostname/port listen there.",
            ExitCode.APPSERVICE_UNREACHABLE,
        ) from None
    log.info("homeserver reaches the appservice", ping_ms=ms)
