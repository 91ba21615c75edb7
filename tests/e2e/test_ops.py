"""Running it as a service, on real Synapse: /health, /metrics, the threads API, the MCP server
over stdio, moving a store (SQLite ⇄ Postgres) under a live deployment, and doctor."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
import structlog
from mcp import ClientSession, StdioServerParameters, stdio_client
from ruamel.yaml import YAML
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from claude_bridge.app import Bridge, build
from claude_bridge.cli import main
from claude_bridge.registration import build_registration
from claude_bridge.store import backup
from tests.conftest import create_pg_database, drop_pg_database
from tests.e2e.conftest import HOOK_TOKEN, HookPoster, Stack, free_port, hook_payload, new_session
from tests.e2e.test_foundation import _until, _wait_for_room

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SPEC = YAML(typ="safe").load((ROOT / "openapi.yaml").read_text())


def conforms(body: Any, schema: str) -> None:
    """Validate against a schema of openapi.yaml (3.1 schemas are JSON Schema 2020-12)."""
    root = {"$ref": f"#/components/schemas/{schema}", "components": SPEC["components"]}
    jsonschema.Draft202012Validator(root).validate(body)


class API:
    def __init__(self, stack: Stack) -> None:
        self.base = f"http://{stack.config['hooks']['listen']}"

    async def call(
        self, method: str, path: str, *, token: str | None = HOOK_TOKEN, **kw: Any
    ) -> tuple[int, Any]:
        headers = dict(kw.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with aiohttp.ClientSession() as http:
            async with http.request(method, self.base + path, headers=headers, **kw) as resp:
                text = await resp.text()
                try:
                    return resp.status, json.loads(text)
                except ValueError:
                    return resp.status, text


async def _session_with_room(hooks: HookPoster, bridge: Bridge, prompt: str) -> tuple[str, str]:
    session = new_session()
    assert (await hooks.post(hook_payload("SessionStart", session)))[0] == 200
    assert (await hooks.post(hook_payload("UserPromptSubmit", session, prompt=prompt)))[0] == 200
    room_id = await _wait_for_room(bridge, session.lower())

    async def drained() -> bool:
        return (await bridge.outbox.backlog())[0] == 0

    await _until(drained, "hook events delivered")
    return session, room_id


async def _alice_says(stack: Stack, bridge: Bridge, room_id: str, text: str) -> str:
    alice = stack.users["alice"]
    await alice.join(room_id)
    event_id = await alice.send_text(room_id, text)

    async def stored() -> bool:
        return any(e.event_id == event_id for e in await bridge.matrix_events.in_room(room_id))

    await _until(stored, "alice's message in the inbox")
    return event_id


async def _metric_samples(api: API) -> dict[str, float]:
    status, text = await api.call("GET", "/metrics", token=None)
    assert status == 200
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


async def test_health_metrics_and_log_context(
    stack: Stack, bridge: Bridge, hooks: HookPoster
) -> None:
    api = API(stack)
    status, report = await api.call("GET", "/health", token=None)
    assert status == 200 and report["ready"] is True, report
    conforms(report, "HealthReport")
    assert report["components"]["database"]["ok"] and report["components"]["homeserver"]["ok"]
    appservice = stack.config["appservice"]["address"]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{appservice}/_matrix/mau/ready") as resp:
            assert resp.status == 200

    # The counters are the process's, shared with earlier tests: what this test did is the
    # difference from here on.
    before = await _metric_samples(api)

    # A log line from inside delivery's work that names nothing itself.
    render = bridge.delivery.render

    def render_and_log(hook: Any, context: Any) -> Any:
        structlog.get_logger("probe").info("rendering", hook_event_name=hook.hook_event_name)
        return render(hook, context)

    bridge.delivery.render = render_and_log
    with capture_logs(processors=[merge_contextvars]) as logs:
        session, room_id = await _session_with_room(hooks, bridge, "measure me")
    assert (await hooks.post(hook_payload("Stop", session), token="wrong"))[0] == 401
    status, report = await api.call("GET", "/health", token=None)
    assert report["components"]["homeserver"]["last_send_at"] is not None
    assert report["components"]["outbound"]["backlog"] == 0

    samples = await _metric_samples(api)

    def added(name: str) -> float:
        return samples[name] - before.get(name, 0.0)

    assert added('claude_bridge_hook_events_total{event="SessionStart",outcome="accepted"}') == 1
    assert added('claude_bridge_hook_events_total{event="unparsed",outcome="unauthorized"}') == 1
    assert (
        added('claude_bridge_hook_events_total{event="UserPromptSubmit",outcome="accepted"}') == 1
    )
    assert added("claude_bridge_hook_ack_seconds_count") == 3  # the 401 too
    assert added('claude_bridge_matrix_send_seconds_count{kind="message",outcome="ok"}') == 2
    assert samples["claude_bridge_outbox_backlog"] == 0
    assert samples["claude_bridge_threads_active"] >= 1

    # Delivery's log lines carry the thread, the session and the room they are about.
    rendering = [e for e in logs if e["event"] == "rendering"]
    assert [e["hook_event_name"] for e in rendering] == ["SessionStart", "UserPromptSubmit"]
    for entry in rendering:
        assert entry["thread_id"] == session.lower(), entry
        assert entry["session_id"] == session and entry["room_id"] == room_id, entry

    # The database going away makes /health and mautrix's probe say "not ready" together.
    async def refused(*_: Any) -> None:
        raise ConnectionRefusedError("database away")

    real = bridge.db.fetchval
    bridge.db.fetchval = refused  # type: ignore[method-assign]
    try:
        status, report = await api.call("GET", "/health", token=None)
        assert status == 503 and report["ready"] is False and report["live"] is True
        conforms(report, "HealthReport")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{appservice}/_matrix/mau/ready") as resp:
                assert resp.status == 500
    finally:
        bridge.db.fetchval = real  # type: ignore[method-assign]
    assert (await api.call("GET", "/health", token=None))[0] == 200


async def test_health_command_for_container_checks(
    stack: Stack, bridge: Bridge, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    YAML().dump({**stack.config, "database": "sqlite:unused.db"}, config)
    # A blocking client in a thread: the bridge answers from this test's event loop.
    assert await asyncio.to_thread(main, ["health", "-c", str(config)]) == 0
    assert json.loads(capsys.readouterr().out)["ready"] is True
    closed = f"http://127.0.0.1:{free_port()}/health"
    assert await asyncio.to_thread(main, ["health", "--url", closed, "--timeout", "1"]) == 1


async def test_threads_api(stack: Stack, start_bridge: Any, hooks: HookPoster) -> None:
    bridge = await start_bridge(
        hooks={"tokens": {"laptop": HOOK_TOKEN, "desk": "another-hook-token-0123"}}
    )
    api = API(stack)
    a, _ = await _session_with_room(hooks, bridge, "refactor the parser")
    b, room_b = await _session_with_room(hooks, bridge, "write the release notes")
    alice_event = await _alice_says(stack, bridge, room_b, "mention the **new** flag")

    assert (await api.call("GET", "/claude/v1/threads", token=None))[0] == 401
    status, body = await api.call("GET", "/claude/v1/threads", params={"q": b[:13]})
    assert status == 200, body
    conforms(body, "ThreadList")
    assert [t["id"] for t in body["threads"]] == [b.lower()]
    status, body = await api.call("GET", "/claude/v1/threads", params={"limit": "1"})
    assert len(body["threads"]) == 1 and body["next_offset"] == 1
    for bad in ({"limit": "0"}, {"limit": "²"}, {"offset": "-1"}, {"q": "a\x00b"}):
        status, body = await api.call("GET", "/claude/v1/threads", params=bad)
        assert status == 400, (bad, body)
        conforms(body, "Error")

    status, page = await api.call("GET", f"/claude/v1/threads/{b.lower()}/messages")
    assert status == 200, page
    conforms(page, "MessagePage")
    texts = [(m["role"], m["text"]) for m in page["messages"]]
    assert ("user", "write the release notes") in texts
    assert ("matrix", "mention the **new** flag") in texts
    mine = next(m for m in page["messages"] if m["role"] == "matrix")
    assert mine["sender"] == stack.users["alice"].user_id
    assert mine["matrix_event_ids"] == [alice_event]
    prompt = next(m for m in page["messages"] if m["role"] == "user")
    assert prompt["matrix_event_ids"] and prompt["sender"] == f"@claude-{b.lower()}:localhost"

    # Session A hands work to B: its ghost joins B's room and posts there.
    post = {"X-Claude-Session-Id": a, "Idempotency-Key": "handover-1"}
    status, posted = await api.call(
        "POST",
        f"/claude/v1/threads/{b.lower()}/messages",
        json={"text": "B: take **this**"},
        headers=post,
    )
    assert status == 201, posted
    conforms(posted, "PostedMessage")
    ghost_a = f"@claude-{a.lower()}:localhost"
    assert posted["sender"] == ghost_a and posted["room_id"] == room_b
    again = await api.call(
        "POST",
        f"/claude/v1/threads/{b.lower()}/messages",
        json={"text": "B: take **this**"},
        headers=post,
    )
    assert again == (201, posted)  # same Idempotency-Key: one message
    seen = await stack.users["alice"].wait_for(
        lambda e: e.get("event_id") == posted["event_id"], room_id=room_b, timeout=30
    )
    assert seen["sender"] == ghost_a
    assert "<strong>this</strong>" in seen["content"]["formatted_body"]
    assert seen["content"]["org.claude_bridge.from_thread"] == a.lower()

    # …and it reaches B's Claude: the next tool hook of session B carries it, once.
    async def queued() -> bool:
        return bool(
            await bridge.db.fetchval(
                "SELECT COUNT(*) FROM session_message WHERE event_id=$1", posted["event_id"]
            )
        )

    await _until(queued, "the hand-off stored for session B")
    # No person wrote it: it waits in B's room for an operator's ✅ (test_who_speaks has more).
    assert posted["delivery"] == "proposed"
    status, answer = await hooks.post(hook_payload("PostToolUse", b, tool_use_id="handoff-early"))
    assert status == 200 and "mention the **new** flag" in json.dumps(answer)  # alice's, alone
    assert "B: take" not in json.dumps(answer)
    await stack.users["alice"].react(room_b, posted["event_id"], "✅")

    async def let_through() -> bool:
        state = await bridge.db.fetchval(
            "SELECT state FROM session_message WHERE event_id=$1", posted["event_id"]
        )
        return bool(state == "queued")

    await _until(let_through, "the hand-off let through by alice")
    for _ in range(2):
        status, answer = await hooks.post(
            hook_payload("PostToolUse", b, tool_use_id=f"handoff-{_}")
        )
        assert status == 200
        context = json.dumps(answer)
        if _ == 0:
            assert answer["hookSpecificOutput"]["additionalContext"] == (
                f"Hand-off from the Claude of another Claude Code session (thread {a.lower()}), "
                f"not from a person; let through by {stack.users['alice'].user_id} via Matrix:\n"
                "> B: take **this**"
            )
        else:
            assert "B: take" not in context

    cases = [
        ({}, {"text": "x"}, HOOK_TOKEN, 400, "X-Claude-Session-Id"),
        ({"X-Claude-Session-Id": new_session()}, {"text": "x"}, HOOK_TOKEN, 403, "no thread"),
        ({"X-Claude-Session-Id": a}, {"text": "x"}, "another-hook-token-0123", 403, "another"),
        ({"X-Claude-Session-Id": a}, {"text": ""}, HOOK_TOKEN, 422, "text"),
        ({"X-Claude-Session-Id": a}, {"text": "a\u0000b"}, HOOK_TOKEN, 422, "NUL"),
        (
            {"X-Claude-Session-Id": a, "Idempotency-Key": "a b"},
            {"text": "x"},
            HOOK_TOKEN,
            400,
            "Idempotency-Key",
        ),
    ]
    for headers, payload, token, want, text in cases:
        status, body = await api.call(
            "POST",
            f"/claude/v1/threads/{b.lower()}/messages",
            json=payload,
            headers=headers,
            token=token,
        )
        assert status == want and text in body["error"], (headers, payload, body)
        conforms(body, "Error")
    status, body = await api.call("GET", "/claude/v1/threads/nope/messages")
    assert status == 404 and "nope" in body["error"]
    status, body = await api.call("GET", "/claude/v1/threads/a/b/c")
    assert status == 404 and isinstance(body, dict)  # JSON even where no route matches
    status, body = await api.call(
        "GET", f"/claude/v1/threads/{b.lower()}/messages", params={"before": "garbage"}
    )
    assert status == 400


async def test_openapi_documents_every_route(bridge: Bridge) -> None:
    """Every route of a running bridge's hook server is in openapi.yaml, and nothing else."""
    from openapi_spec_validator import validate

    validate(SPEC)
    routes = {
        (r.method.lower(), r.resource.canonical)
        for r in bridge.hooks.app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    documented = {
        (method, path)
        for path, ops in SPEC["paths"].items()
        for method in ops
        if method in ("get", "post", "put", "delete", "patch")
    }
    assert routes == documented


async def test_mcp_tools_over_stdio(
    stack: Stack, bridge: Bridge, hooks: HookPoster, tmp_path: Path
) -> None:
    a, _ = await _session_with_room(hooks, bridge, "build the importer")
    b, room_b = await _session_with_room(hooks, bridge, "review the importer")
    await _alice_says(stack, bridge, room_b, "looks good so far")
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "claude_bridge", "mcp"],
        env={
            "CLAUDE_BRIDGE_URL": f"http://{stack.config['hooks']['listen']}",
            "CLAUDE_BRIDGE_TOKEN": HOOK_TOKEN,
            "CLAUDE_CODE_SESSION_ID": a,
        },
        cwd=str(ROOT),
    )
    with (tmp_path / "mcp-stderr.log").open("w") as errlog:
        async with stdio_client(server, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as mcp:
                await mcp.initialize()
                tools = {t.name: t for t in (await mcp.list_tools()).tools}
                assert set(tools) == {
                    "claude_list_threads",
                    "claude_read_thread",
                    "claude_send_to_thread",
                }
                assert "project" in tools["claude_list_threads"].input_schema["properties"]

                listed = await mcp.call_tool("claude_list_threads", {"text": b[:13]})
                assert not listed.is_error
                text = listed.content[0].text  # type: ignore[union-attr]
                assert b.lower() in text and a.lower() not in text
                mine = await mcp.call_tool("claude_list_threads", {"text": a[:13]})
                assert "(this session)" in mine.content[0].text  # type: ignore[union-attr]

                read = await mcp.call_tool("claude_read_thread", {"thread_id": b, "limit": 10})
                text = read.content[0].text  # type: ignore[union-attr]
                assert "] prompt:\n> review the importer\n" in text
                assert f"] {stack.users['alice'].user_id}:\n> looks good so far" in text

                sent = await mcp.call_tool(
                    "claude_send_to_thread", {"thread_id": b, "text": "importer is ready for you"}
                )
                assert not sent.is_error, sent
                sent_text = sent.content[0].text  # type: ignore[union-attr]
                assert f"@claude-{a.lower()}:localhost" in sent_text
                assert "once an operator there approves it" in sent_text

                missing = await mcp.call_tool("claude_read_thread", {"thread_id": "nope"})
                assert missing.is_error
                assert "no thread 'nope'" in missing.content[0].text  # type: ignore[union-attr]
    event = await stack.users["alice"].wait_for(
        lambda e: e.get("content", {}).get("body") == "importer is ready for you",
        room_id=room_b,
        timeout=30,
    )
    assert event["sender"] == f"@claude-{a.lower()}:localhost"


async def test_moving_the_store_keeps_threads_and_rooms(
    stack: Stack, store_url: str, hooks: HookPoster, tmp_path: Path
) -> None:
    """Run on one store, migrate-db to the other kind, run on that: same room, nothing lost."""
    target = (
        await create_pg_database()
        if store_url.startswith("sqlite:")
        else (f"sqlite:{tmp_path / 'moved.db'}")
    )
    source = build(stack.bridge_config(store_url), tmp_path)
    await source.start()
    try:
        session, room_id = await _session_with_room(hooks, source, "before the move")
        await _alice_says(stack, source, room_id, "said before the move")
        before = await backup.export_threads(source.db, [session.lower()])
    finally:
        await source.stop()
    try:
        result = await backup.migrate(store_url, target)  # what `claude-bridge migrate-db` runs
        assert result.threads >= 1
        moved = build(stack.bridge_config(target), tmp_path)
        await moved.start()
        try:
            exported = await backup.export_threads(moved.db, [session.lower()])
            assert exported["threads"] == before["threads"]
            await hooks.post(hook_payload("UserPromptSubmit", session, prompt="after the move"))

            async def delivered() -> bool:
                return (await moved.outbox.backlog())[0] == 0

            await _until(delivered, "the event after the move delivered")
            thread = await moved.threads.get(session.lower())
            assert thread is not None and thread.room_id == room_id  # no second room
            events = await stack.users["alice"].messages(room_id)
            bodies = [e["content"].get("body", "") for e in events if e["type"] == "m.room.message"]
            assert any("after the move" in body for body in bodies)
            prompts = [b for b in bodies if "before the move" in b and "said" not in b]
            assert len(prompts) == 1, bodies  # nothing was sent again
        finally:
            await moved.stop()
    finally:
        if not target.startswith("sqlite:"):
            await drop_pg_database(target)


# doctor: the real command against the session's Synapse, healthy and broken one way at a time.


def _write_setup(stack: Stack, tmp_path: Path, **changes: dict[str, Any]) -> tuple[Path, Path]:
    config: dict[str, Any] = json.loads(json.dumps(stack.config))
    config["database"] = f"sqlite:{tmp_path / 'doctor.db'}"
    for section, values in changes.items():
        if section == "registration":
            continue
        config[section] = {**config.get(section, {}), **values}
    config_path, registration = tmp_path / "config.yaml", tmp_path / "registration.yaml"
    YAML().dump(config, config_path)
    from claude_bridge.config import parse_config

    reg = build_registration(parse_config(config))
    reg.update(changes.get("registration", {}))
    YAML().dump(reg, registration)
    for path in (config_path, registration):  # as setup writes them: doctor checks the modes
        path.chmod(0o600)
    return config_path, registration


@pytest.mark.parametrize(
    ("changes", "failing"),
    [
        ({}, []),
        ({"appservice": {"as_token": "not-the-registered-token"}}, ["as_token"]),
        ({"registration": {"hs_token": "drifted"}}, ["registration"]),
        ({"appservice": {"hs_token": "not-what-synapse-sends"}}, ["appservice reachable"]),
        ({"homeserver": {"address": "http://127.0.0.1:{free}"}}, ["homeserver"]),
        ({"database": "postgres://nobody@127.0.0.1:{free}/nothing"}, ["database"]),
        ({"hooks": {"tokens": {}}}, ["hook tokens"]),
    ],
    ids=[
        "healthy",
        "wrong-as-token",
        "registration-mismatch",
        "appservice-unreachable",
        "homeserver-unreachable",
        "bad-database-url",
        "no-hook-tokens",
    ],
)
def test_doctor(
    stack: Stack,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    changes: dict[str, Any],
    failing: list[str],
) -> None:
    port = free_port()
    changes = json.loads(json.dumps(changes).replace("{free}", str(port)))
    database = changes.pop("database", None)
    config_path, registration = _write_setup(stack, tmp_path, **changes)
    if database:
        data = YAML(typ="safe").load(config_path.read_text())
        data["database"] = database
        YAML().dump(data, config_path)
    code = main(["doctor", "-c", str(config_path), "-r", str(registration)])
    out = capsys.readouterr().out
    failed = [line[2:].split("  ")[0].strip() for line in out.splitlines() if line.startswith("✗")]
    assert failed == failing, out
    assert code == (1 if failing else 0), out
    if not failing:
        assert "Synapse pinged" in out and "stand-in listener" in out
        assert "all checks passed" in out
    else:
        assert "→ " in out  # every failure says what to do
    if "homeserver" in failing:
        assert "✓ as_token" not in out  # nothing after an unreachable homeserver is claimed
