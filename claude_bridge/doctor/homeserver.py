"""The checks against the homeserver: reachable, ``as_token`` accepted, and it reaches us back.

When the bridge is not running, a stand-in listener answers Synapse's ping on the appservice port,
so the check proves the address and ``hs_token`` without starting the bridge.
"""

from __future__ import annotations

import hmac
import time

import aiohttp
from aiohttp import web

from claude_bridge.config import Config
from claude_bridge.doctor.checks import Check
from claude_bridge.matrix.client import MatrixClient, MatrixError


async def check_homeserver(config: Config, http: aiohttp.ClientSession) -> list[Check]:
    client = MatrixClient(
        http,
        config.homeserver.address,
        config.appservice.as_token,
        config.matrix_names().bot,
        timeout=10,
    )
    try:
        # Without the token: a wrong as_token must not look like an unreachable homeserver.
        async with http.get(
            f"{config.homeserver.address}/_matrix/client/versions",
            timeout=aiohttp.ClientTimeout(total=10),
        ) as resp:
            if resp.status != 200:
                raise MatrixError(
                    f"GET /_matrix/client/versions: {resp.status}", status=resp.status
                )
            versions = await resp.json()
    except (MatrixError, aiohttp.ClientError, TimeoutError, ValueError) as e:
        return [
            Check(
                "homeserver",
                False,
                f"{config.homeserver.address}: {str(e) or type(e).__name__}",
                "check homeserver.address and that Synapse is running",
            )
        ]
    checks = [
        Check(
            "homeserver",
            True,
            f"{config.homeserver.address} answers "
            f"(spec {', '.join(versions.get('versions', [])[-1:]) or '?'})",
        )
    ]
    try:
        user_id = await client.whoami()
    except MatrixError as e:
        checks.append(
            Check(
                "as_token",
                False,
                f"rejected: {e}",
                "Synapse has not loaded this registration, or its as_token differs: "
                "add it to app_service_config_files and restart Synapse",
            )
        )
        return checks
    if user_id != client.bot_mxid:
        checks.append(
            Check(
                "as_token",
                False,
                f"whoami is {user_id}, expected {client.bot_mxid}",
                "appservice.bot_username or homeserver.domain differ from Synapse's",
            )
        )
        return checks
    checks.append(Check("as_token", True, f"accepted (whoami: {user_id})"))
    checks.append(await check_ping(config, client))
    return checks


async def check_ping(config: Config, client: MatrixClient) -> Check:
    stand_in = await _stand_in_listener(config)
    who = "doctor's stand-in listener (the bridge is not running)" if stand_in else "the bridge"
    try:
        ms = await client.ping(config.appservice.id, txn_id=f"doctor-{time.time_ns()}")
    except MatrixError as e:
        return Check(
            "appservice reachable",
            False,
            f"Synapse cannot reach {config.appservice.address} ({who}): {e}",
            "appservice.address must be reachable from Synapse and match the "
            "registration's url; hs_token must match too",
        )
    finally:
        if stand_in:
            await stand_in.cleanup()
    return Check(
        "appservice reachable",
        True,
        f"Synapse pinged {config.appservice.address} in {ms} ms (answered by {who})",
    )


async def _stand_in_listener(config: Config) -> web.AppRunner | None:
    """Answer ``/_matrix/app/v1/ping`` on the appservice port, or ``None`` if it is taken."""
    secret = config.appservice.hs_token.encode()

    async def ping(request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(given, secret):
            return web.json_response(
                {"errcode": "M_FORBIDDEN", "error": "wrong hs_token"}, status=403
            )
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/_matrix/app/v1/ping", ping)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.appservice.hostname, config.appservice.port).start()
    except OSError:  # in use: the bridge is running and answers itself
        await runner.cleanup()
        return None
    return runner
