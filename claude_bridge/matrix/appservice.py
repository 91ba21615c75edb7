"""The appservice listener: Synapse → bridge.

We keep mautrix's ``AppService`` (its aiohttp app, HTTP session, probes and API objects) but own
the parts that decide durability and auth:

- one middleware checks ``hs_token`` for every appservice route in constant time
  (missing → 401 ``M_UNAUTHORIZED``, wrong → 403 ``M_FORBIDDEN``);
- the transaction endpoint persists the events and the transaction id in one database
  transaction *before* answering 200, answers 500 if that fails (Synapse retries), and a replayed
  transaction id is answered 200 without being stored again.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable

from aiohttp import web
from mautrix.appservice import AppService
from mautrix.appservice.state_store import ASStateStore
from mautrix.client.state_store.memory import MemoryStateStore

from claude_bridge.collector import ACTIVITY
from claude_bridge.config import Config
from claude_bridge.log import get_logger, mau_logger
from claude_bridge.matrix.echo import EchoFilter
from claude_bridge.matrix.inbound_events import parse
from claude_bridge.store import MatrixEventStore

log = get_logger("appservice")

# Synapse sends up to 50 PDUs and 100 EDUs of up to 64 KiB each in one transaction.
MAX_TRANSACTION_BYTES = 32 * 1024 * 1024

AliasQuery = Callable[[str], Awaitable[bool]]
UserQuery = Callable[[str], Awaitable[bool]]


class _MemoryStateStore(MemoryStateStore, ASStateStore):
    """mautrix wants a state store; the bridge's state lives in its database instead."""

    def __init__(self) -> None:
        MemoryStateStore.__init__(self)
        ASStateStore.__init__(self)


def _error(status: int, errcode: str, message: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": message}, status=status)


class BridgeAppService(AppService):
    def __init__(
        self,
        config: Config,
        store: MatrixEventStore,
        *,
        on_events: Callable[[], None],
        query_alias: AliasQuery,
        query_user: UserQuery,
        echoes: EchoFilter,
        on_store_failure: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._echoes = echoes
        self._on_events = on_events
        self._on_store_failure = on_store_failure
        self._alias_exists = query_alias
        self._user_exists = query_user
        super().__init__(
            server=config.homeserver.address,
            domain=config.homeserver.domain,
            as_token=config.appservice.as_token,
            hs_token=config.appservice.hs_token,
            bot_localpart=config.appservice.bot_username,
            id=config.appservice.id,
            log=mau_logger("as"),
            state_store=_MemoryStateStore(),
            aiohttp_params={
                "client_max_size": MAX_TRANSACTION_BYTES,
                "middlewares": [self._auth_middleware],
            },
        )
        # mautrix sets it in start() only; stop() before (a failed start-up) has none to clean up.
        self.runner = None

    # mautrix's own check accepts any token after our middleware ran; it is never reached otherwise.
    def _check_token(self, request: web.Request) -> bool:
        return True

    @web.middleware
    async def _auth_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.startswith("/_matrix/mau/"):
            return await handler(request)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        token = token or request.query.get("access_token")
        if not token:
            return _error(401, "M_UNAUTHORIZED", "missing hs_token")
        if not hmac.compare_digest(token.encode(), self.hs_token.encode()):
            return _error(403, "M_FORBIDDEN", "wrong hs_token")
        return await handler(request)

    async def _http_handle_transaction(self, request: web.Request) -> web.Response:
        txn_id = request.match_info["transaction_id"]
        ACTIVITY.note()  # the collector's long pauses wait for a quiet moment
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return _error(400, "M_NOT_JSON", "transaction body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("events", []), list):
            return _error(400, "M_BAD_JSON", "transaction must be an object with an events list")
        events = body.get("events", [])
        # Echoes of what our ghosts sent are most of the traffic and need nothing from us.
        wanted = [e for e in events if not (isinstance(e, dict) and self._echoes.is_echo(parse(e)))]
        try:
            new = await self._store.store_transaction(txn_id, wanted, total=len(events))
        except Exception:
            log.exception("could not persist transaction; Synapse will retry", txn_id=txn_id)
            # Synapse now backs off from us; the recovery watch pings it once we can store again.
            self._on_store_failure()
            return _error(500, "M_UNKNOWN", "could not persist the transaction, retry later")
        if new is None:
            log.debug("replayed transaction ignored", txn_id=txn_id)
            return web.json_response({})
        # Counts only: whether (and when) a transaction came is what a stalled test needs.
        log.debug("transaction stored", txn_id=txn_id, events=len(events), wanted=len(wanted))
        if new:
            self._on_events()
        return web.json_response({})

    async def _http_query_alias(self, request: web.Request) -> web.Response:
        alias = request.match_info["alias"]
        if await self._alias_exists(alias):
            return web.json_response({})
        return _error(404, "M_NOT_FOUND", f"no thread for {alias}")

    async def _http_query_user(self, request: web.Request) -> web.Response:
        user_id = request.match_info["user_id"]
        if await self._user_exists(user_id):
            return web.json_response({})
        return _error(404, "M_NOT_FOUND", f"no ghost {user_id}")
