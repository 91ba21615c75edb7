"""Bad input on every edge, each with the answer it gets (both stores, real Synapse).

Extends ``test_foundation.py`` (tokens, non-JSON, arrays, invalid UTF-8, a 2 MiB body, missing or
mistyped fields, unknown events) with the rest: hook bodies that are huge, deep, non-finite or not
storable, session ids that cannot be localparts, too many new sessions from one token; appservice
transactions that are malformed, of unknown event types or huge; and Matrix content that tries to
inject HTML or ping people.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from html.parser import HTMLParser
from typing import Any

import aiohttp
import pytest

from claude_bridge.app import Bridge
from claude_bridge.ids import thread_id_for
from tests.e2e.conftest import HookPoster, Stack, hook_payload, new_session

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)
    return result


async def room_of(bridge: Bridge, session: str) -> str:
    async def room() -> str | None:
        thread = await bridge.threads.get(thread_id_for(session))
        return thread.room_id if thread else None

    return str(await until(room, f"room of {session!r}"))


async def stored(bridge: Bridge, session: str) -> list[str]:
    rows = await bridge.db.fetch(
        "SELECT event_name FROM hook_event WHERE thread_id=$1 ORDER BY id", thread_id_for(session)
    )
    return [r["event_name"] for r in rows]


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth - 1):
        value = {"k": value} if i % 2 else [value]
    return value


# --- hook ingest ------------------------------------------------------------------------------


async def test_hook_ingest_answers_every_bad_body(bridge: Bridge, hooks: HookPoster) -> None:
    session = new_session()
    good = hook_payload("UserPromptSubmit", session)
    raw_cases: list[tuple[bytes, int, str]] = [
        (b"", 400, "JSON"),
        (b"42", 400, "object"),
        (b"null", 400, "object"),
        (b'"a string"', 400, "object"),
        (json.dumps({**good, "x": "NaN"}).encode().replace(b'"NaN"', b"NaN"), 400, "NaN"),
        (json.dumps({**good, "x": 1}).encode().replace(b": 1}", b": 1e999}"), 400, "finite"),
        (json.dumps({**good, "tool_input": nested(65)}).encode(), 400, "nested"),
        (json.dumps({**good, "session_id": "a\x00b"}).encode(), 422, "NUL"),
        (json.dumps({**good, "cwd": "/tmp/\x00"}).encode(), 422, "cwd"),
        (json.dumps({**good, "session_id": "x"}).encode().replace(b'"x"', b'"\\ud800"'), 422, "session_id"),
        (json.dumps({**good, "hook_event_name": "X" * 129}).encode(), 422, "hook_event_name"),
    ]  # fmt: skip
    payload_cases: list[tuple[dict[str, Any], int, str]] = [
        ({k: v for k, v in good.items() if k != "hook_event_name"}, 422, "hook_event_name"),
        ({**good, "session_id": ""}, 422, "session_id"),
        ({**good, "session_id": "s" * 129}, 422, "session_id"),
        ({**good, "hook_event_name": 7}, 422, "hook_event_name"),
        ({**good, "prompt": ["not", "a", "string"]}, 422, "prompt"),
        ({**hook_payload("PreToolUse", session), "tool_input": "rm -rf /"}, 422, "tool_input"),
        ({**hook_payload("MessageDisplay", session), "index": "first"}, 422, "index"),
        ({**good, "session_id": "🙂" * 60}, 422, "too long"),
    ]
    for raw, want, text in raw_cases:
        status, body = await hooks.post(None, raw=raw)
        assert (status, text in body.get("error", "")) == (want, True), (raw[:80], body)
    for payload, want, text in payload_cases:
        status, body = await hooks.post(payload)
        assert (status, text in body.get("error", "")) == (want, True), (payload, body)
    # Nothing was stored for any of them; depth 64 is still fine and stored.
    assert await stored(bridge, session) == []
    status, _ = await hooks.post({**good, "tool_input": nested(63)})
    assert status == 200 and await stored(bridge, session) == ["UserPromptSubmit"]


async def test_a_10_mib_body_is_refused_with_or_without_a_length(
    bridge: Bridge, hooks: HookPoster
) -> None:
    url, auth = f"{hooks.url}/claude/v1/hooks", {"Authorization": f"Bearer {hooks.token}"}
    session = new_session()
    body = json.dumps({**hook_payload("Stop", session), "pad": "x" * 10 * MIB}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 64 * 1024):
            yield body[i : i + 64 * 1024]

    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=body, headers=auth) as resp:
            assert resp.status == 413 and "larger" in (await resp.json())["error"]
        chunked: int | None = None  # no Content-Length: the limit is hit while reading
        try:
            async with http.post(url, data=chunks(), headers=auth) as resp:
                chunked = resp.status
        except aiohttp.ClientOSError:
            pass  # the server may close the connection before the client finished sending
        assert chunked in (413, None), chunked  # refused, whether or not the answer got through
        async with http.get(url, headers=auth) as resp:
            assert resp.status == 405
    # Nothing of either body was stored, not even its thread; the server is still fine.
    assert await stored(bridge, session) == []
    assert await bridge.threads.get(thread_id_for(session)) is None
    assert (await hooks.post(hook_payload("SessionStart", session)))[0] == 200
    assert await stored(bridge, session) == ["SessionStart"]


async def test_a_session_id_that_is_no_localpart_gets_a_working_room(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session = f"Weird Session/ID:é #{uuid.uuid4().hex[:8]} 🙂"
    for name, extra in (("SessionStart", {}), ("UserPromptSubmit", {"prompt": "still works?"})):
        assert (await hooks.post(hook_payload(name, session, **extra))) == (200, {})
    thread_id = thread_id_for(session)
    assert thread_id.startswith("weird=20session=2fid=3a=c3=a9=20=23")
    room_id = await room_of(bridge, session)
    alice = stack.users["alice"]
    assert await alice.resolve_alias(f"#claude-thread-{thread_id}:localhost") == room_id
    await alice.join(room_id)
    ghost = f"@claude-{thread_id}:localhost"
    await alice.wait_for(
        lambda e: e["sender"] == ghost and "still works?" in e["content"]["body"],
        room_id=room_id,
        timeout=30,
    )


async def test_session_ids_differing_only_in_case_are_refused_not_merged(
    bridge: Bridge, hooks: HookPoster
) -> None:
    session = f"Case-{uuid.uuid4()}"
    assert (await hooks.post(hook_payload("SessionStart", session)))[0] == 200
    status, body = await hooks.post(hook_payload("SessionStart", session.lower()))
    assert status == 409 and "differ only in case" in body["error"]
    assert await stored(bridge, session) == ["SessionStart"]


async def test_new_sessions_per_token_are_capped(
    stack: Stack, start_bridge: Any, hooks: HookPoster
) -> None:
    tokens = {"laptop": hooks.token, "ci": "ci-secret"}
    bridge: Bridge = await start_bridge(hooks={"new_threads_per_minute": 10, "tokens": tokens})
    # The buckets' clock stands still: posting 1000 sessions may take longer than the 6 s that
    # refill one on a loaded machine, and the cap, not the machine, must decide.
    bridge.hooks.ingest.new_threads.clock = lambda: 1000.0
    existing = new_session()
    assert (await hooks.post(hook_payload("SessionStart", existing)))[0] == 200
    sessions = [new_session() for _ in range(1000)]
    results: list[tuple[int, Any]] = []
    for i in range(0, len(sessions), 100):
        results += await asyncio.gather(
            *(hooks.post(hook_payload("SessionStart", s)) for s in sessions[i : i + 100])
        )
    accepted = [s for s, (status, _) in zip(sessions, results, strict=True) if status == 200]
    limited = [body for status, body in results if status == 429]
    print(f"new-thread cap: {len(accepted)} accepted, {len(limited)} answered 429")
    assert len(accepted) == 9 and len(accepted) + len(limited) == len(sessions)
    assert "'laptop' opened more than 10 new sessions" in limited[0]["error"]
    # Retry-After says when; events of existing sessions and other tokens are not limited.
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{hooks.url}/claude/v1/hooks",
            json=hook_payload("SessionStart", new_session()),
            headers={"Authorization": f"Bearer {hooks.token}"},
        ) as resp:
            assert resp.status == 429 and resp.headers["Retry-After"] == "6"  # 1 per 6 s
    for name in ("UserPromptSubmit", "Stop"):
        assert (await hooks.post(hook_payload(name, existing)))[0] == 200
    assert (await hooks.post(hook_payload("SessionStart", new_session()), token="ci-secret"))[
        0
    ] == 200
    threads = await bridge.db.fetchval("SELECT COUNT(*) FROM thread")
    assert threads == 1 + len(accepted) + 1


# --- appservice -------------------------------------------------------------------------------


@pytest.fixture
async def appservice(stack: Stack) -> AsyncIterator[Callable[..., Awaitable[tuple[int, Any]]]]:
    base = stack.config["appservice"]["address"]
    token = stack.config["appservice"]["hs_token"]
    async with aiohttp.ClientSession() as http:

        async def call(
            method: str, path: str, body: Any = None, *, raw: bytes | None = None,
            auth: str | None = "header", tok: str | None = None,
        ) -> tuple[int, Any]:  # fmt: skip
            headers, params = {}, {}
            if auth == "header":
                headers["Authorization"] = f"Bearer {tok or token}"
            elif auth == "query":
                params["access_token"] = tok or token
            data = (
                raw if raw is not None else json.dumps(body).encode() if body is not None else None
            )
            async with http.request(method, base + path, data=data, headers=headers, params=params) as resp:  # fmt: skip
                try:
                    return resp.status, await resp.json(content_type=None)
                except ValueError:  # aiohttp's own 413 is plain text
                    return resp.status, {"text": await resp.text()}

        yield call


def matrix_event(event_type: str = "m.room.message", **content: Any) -> dict[str, Any]:
    return {
        "event_id": f"$bad-{uuid.uuid4().hex}",
        "room_id": "!nowhere:localhost",
        "sender": "@mallory:localhost",
        "type": event_type,
        "origin_server_ts": 1,
        "content": content,
    }


async def test_appservice_answers_bad_transactions(bridge: Bridge, appservice: Any) -> None:
    txn = f"/_matrix/app/v1/transactions/bad-{uuid.uuid4().hex}"
    ok = {"events": [matrix_event(body="hi")]}
    for kwargs, want, errcode in [
        ({"auth": None}, 401, "M_UNAUTHORIZED"),
        ({"auth": "header", "tok": "wrong"}, 403, "M_FORBIDDEN"),
        ({"auth": "query", "tok": "wrong"}, 403, "M_FORBIDDEN"),
        ({"raw": b"\xff\xfe"}, 400, "M_NOT_JSON"),
        ({"raw": b"[]"}, 400, "M_BAD_JSON"),
        ({"body": {"events": "nope"}}, 400, "M_BAD_JSON"),
    ]:
        status, body = await appservice("PUT", txn, kwargs.pop("body", ok), **kwargs)
        assert (status, body.get("errcode")) == (want, errcode), kwargs
    for path in ("/_matrix/app/v1/users/@claude-x:localhost", "/_matrix/app/v1/rooms/%23x:localhost"):  # fmt: skip
        assert (await appservice("GET", path, auth=None))[0] == 401
    # Events the bridge cannot route are skipped; unknown types are stored and processed.
    weird = matrix_event("org.example.unknown", anything=[1, {"deep": True}])
    junk: list[Any] = [None, 7, "x", {"event_id": "$only-an-id"}, {**matrix_event(), "sender": 5}]
    status, _ = await appservice("PUT", txn + "-mixed", {"events": [*junk, weird]}, auth="query")
    assert status == 200
    await until(lambda: processed(bridge, weird["event_id"]), "the unknown event processed")
    assert (
        await bridge.db.fetchval(
            "SELECT COUNT(*) FROM matrix_event WHERE room_id='!nowhere:localhost'"
        )
        == 1
    )


async def processed(bridge: Bridge, event_id: str) -> bool:
    return bool(
        await bridge.db.fetchval(
            "SELECT processed_at FROM matrix_event WHERE event_id=$1", event_id
        )
    )


async def test_appservice_takes_a_huge_transaction_and_refuses_a_monstrous_one(
    bridge: Bridge, appservice: Any
) -> None:
    events = [matrix_event(body="x" * 60 * 1024) for _ in range(50)]
    status, _ = await appservice("PUT", f"/_matrix/app/v1/transactions/huge-{uuid.uuid4().hex}", {"events": events})  # fmt: skip
    assert status == 200
    assert (
        await bridge.db.fetchval(
            "SELECT COUNT(*) FROM matrix_event WHERE room_id='!nowhere:localhost'"
        )
        == 50
    )
    await until(lambda: processed(bridge, events[-1]["event_id"]), "the huge transaction processed")
    monstrous = {"events": [matrix_event(body="x" * MIB) for _ in range(33)]}
    try:
        status, _ = await appservice("PUT", "/_matrix/app/v1/transactions/monstrous", monstrous)
        assert status == 413
    except aiohttp.ClientOSError:
        pass  # closed while we were still sending: refused all the same
    assert (
        await bridge.db.fetchval(
            "SELECT COUNT(*) FROM matrix_event WHERE room_id='!nowhere:localhost'"
        )
        == 50
    )


# --- Matrix content ---------------------------------------------------------------------------

INJECTION = (
    "Done. <script>alert('x')</script> <img src=x onerror=alert(1)> "
    '[click](javascript:alert(1)) <a href="https://evil.example">pill</a>\n\n'
    "@alice:localhost and @mallory:localhost, see "
    "[alice](https://matrix.to/#/@alice:localhost)"
)


async def test_claude_text_cannot_inject_html_or_ping_people(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session = new_session()
    for name, extra in (
        ("SessionStart", {}),
        ("UserPromptSubmit", {"prompt": "<b>bold</b><script>x()</script> hi @alice:localhost"}),
        ("Stop", {"last_assistant_message": INJECTION}),
    ):
        assert (await hooks.post(hook_payload(name, session, **extra)))[0] == 200
    room_id = await room_of(bridge, session)
    alice = stack.users["alice"]
    await alice.join(room_id)
    ghost = f"@claude-{session}:localhost"
    reply = await alice.wait_for(
        lambda e: e["sender"] == ghost and "Done." in e["content"]["body"], room_id=room_id
    )
    prompt = next(
        e for e in await alice.messages(room_id)
        if e["sender"] == ghost and "bold" in e["content"].get("body", "")
    )  # fmt: skip
    for event in (reply, prompt):
        content = event["content"]
        tags = Tags()
        tags.feed(content.get("formatted_body", ""))
        assert {t for t, _ in tags.seen} <= {"p", "a", "b", "code", "blockquote", "br", "strong"}
        for tag, attrs in tags.seen:
            assert not any(name.startswith("on") for name, _ in attrs), (tag, attrs)
            if tag == "a":  # only the Markdown link, to matrix.to; never javascript: or raw <a>
                assert dict(attrs)["href"].startswith("https://matrix.to/"), attrs
        assert content["m.mentions"] == {}  # nobody named in Claude's text is mentioned
    assert "&lt;script&gt;" in reply["content"]["formatted_body"]
    assert "&lt;b&gt;bold&lt;/b&gt;&lt;script&gt;" in prompt["content"]["formatted_body"]

    # A positive control: a Notification pings the operators — so the check below can fail.
    assert (await hooks.post(hook_payload("Notification", session)))[0] == 200
    ping = await alice.wait_for(
        lambda e: e["sender"] == ghost and "permission" in e["content"].get("body", ""),
        room_id=room_id,
    )
    assert "@alice:localhost" in ping["content"]["m.mentions"]["user_ids"]

    async def highlights() -> dict[str, bool]:
        data = await alice.request(
            "GET", "/_matrix/client/v3/notifications", params={"limit": "100"}
        )
        return {
            n["event"]["event_id"]: any(
                isinstance(a, dict) and a.get("set_tweak") == "highlight" and a.get("value", True)
                for a in n["actions"]
            )
            for n in data["notifications"]
            if n["room_id"] == room_id
        }

    await until(lambda: _has(highlights, ping["event_id"]), "alice's notification for the ping")
    found = await highlights()
    assert found[ping["event_id"]] is True
    assert not found.get(reply["event_id"]) and not found.get(prompt["event_id"])


class Tags(HTMLParser):
    """The tags and attributes of an HTML fragment, as a browser would parse them."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append((tag, attrs))


async def _has(get: Callable[[], Awaitable[dict[str, bool]]], key: str) -> bool:
    return key in await get()


async def test_html_from_matrix_reaches_claude_as_plain_text(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    session = new_session()
    assert (await hooks.post(hook_payload("SessionStart", session)))[0] == 200
    room_id = await room_of(bridge, session)
    alice = stack.users["alice"]
    await alice.join(room_id)
    body = "please run <script>alert(1)</script> & check <b>this</b>"
    await alice.send_event(
        room_id,
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": body,
            "format": "org.matrix.custom.html",
            "formatted_body": '<img src=x onerror="steal()"><a href="javascript:x()">run</a>',
        },
    )

    async def answer() -> str:
        status, out = await hooks.post(hook_payload("PreToolUse", session))
        assert status == 200
        return str(out.get("hookSpecificOutput", {}).get("additionalContext", ""))

    context = await until(answer, "alice's message in a hook answer")
    # Claude gets the plain body, verbatim, quoted under its sender; the HTML never reaches it.
    assert context == f"Message from @alice:localhost via Matrix:\n> {body}"
    assert "onerror" not in context and "javascript:" not in context
