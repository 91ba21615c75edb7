"""Secrets never reach the logs.

The bridge runs as a real process at DEBUG with JSON logs (everything it and its libraries log)
while hooks come in with the right and wrong tokens, Synapse sends transactions with the
``hs_token``, the bridge talks to Synapse with the ``as_token`` and someone probes the appservice
with a wrong token; none of those strings may appear anywhere in the output. (Constant-time token
comparison is in hooks/server.py and matrix/appservice.py; the 0600 files in test_config.py.)
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest

from tests.e2e.conftest import HOOK_TOKEN, HookPoster, Stack, hook_payload, new_session
from tests.e2e.processes import BridgeProcess

pytestmark = pytest.mark.e2e


def rows(db: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        try:
            return conn.execute(query).fetchall()
        except sqlite3.OperationalError:
            return []  # not migrated yet


async def until_rows(
    db: Path, query: str, what: str, timeout: float = 30.0
) -> list[tuple[object, ...]]:
    deadline = time.monotonic() + timeout
    while not (found := rows(db, query)):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
    return found


async def test_no_token_appears_in_any_log_line(stack: Stack, tmp_path: Path) -> None:
    config = json.loads(json.dumps(stack.config))
    db = tmp_path / "bridge.db"
    config.update(database=f"sqlite:{db}", logging={"level": "DEBUG", "format": "json"})
    as_token, hs_token = config["appservice"]["as_token"], config["appservice"]["hs_token"]
    wrong = f"almost-{HOOK_TOKEN}"
    bridge = await BridgeProcess(config, tmp_path).start()
    hooks = HookPoster(bridge.hook_url)
    try:
        await bridge.wait_ready()
        session = new_session()
        for name in ("SessionStart", "UserPromptSubmit", "Stop"):
            assert (await hooks.post(hook_payload(name, session)))[0] == 200
        assert (await hooks.post(hook_payload("Stop", session), token=wrong))[0] == 401
        assert (await hooks.post(None, raw=b"{broken", token=HOOK_TOKEN))[0] == 400
        room = await until_rows(db, "SELECT room_id FROM thread WHERE room_id IS NOT NULL", "room")
        alice = stack.users["alice"]
        await alice.join(str(room[0][0]))
        await alice.send_text(str(room[0][0]), "a message, so Synapse sends a transaction")
        await until_rows(db, "SELECT 1 FROM matrix_event WHERE sender='@alice:localhost'", "txn")
        base = config["appservice"]["address"]
        async with aiohttp.ClientSession() as http:
            for headers, params in (
                ({"Authorization": f"Bearer {wrong}"}, {}),
                ({}, {"access_token": wrong}),
            ):
                async with http.put(f"{base}/_matrix/app/v1/transactions/probe", data="{}",
                                    headers=headers, params=params) as resp:  # fmt: skip
                    assert resp.status == 403
    finally:
        await hooks.close()
        await bridge.close()
    log = "\n".join(bridge.lines)
    assert '"hook accepted"' in log and '"level": "debug"' in log  # the capture is complete
    for secret in (HOOK_TOKEN, wrong, as_token, hs_token):
        for form in {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]}:
            assert form not in log, f"a token ({secret[:6]}…) was logged"
