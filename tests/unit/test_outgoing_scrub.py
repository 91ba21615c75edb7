"""The one choke point: whatever builds a request, no secret leaves in it.

The requests are those ``MatrixClient`` serialises (captured from its real ``request`` method, a
stand-in session answering as a homeserver would), so this covers the render pipeline, the
router's room, ghost and space set-up and any other caller. The end-to-end proof against Synapse
is ``tests/e2e/security/test_secrets.py``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_bridge.api.threads import scrub_responses
from claude_bridge.catchup import with_catchup_marker
from claude_bridge.catchup.recover import synthetic_events
from claude_bridge.catchup.transcript import parse_items
from claude_bridge.config import parse_config
from claude_bridge.config.sections.mirror import RedactConfig
from claude_bridge.events.parse import HookInputError, parse_hook_event
from claude_bridge.hooks.validate import unstorable
from claude_bridge.matrix.client import MatrixClient
from claude_bridge.matrix.outgoing import outgoing_scrubber, scrub_body
from claude_bridge.matrix.relations import edit_content
from claude_bridge.permissions import Permissions
from claude_bridge.render import RenderContext, render_event
from claude_bridge.render.notices import MINOR_EVENTS
from claude_bridge.render.room_status import with_room_status
from claude_bridge.render.scrub import scrubber_for
from claude_bridge.room_state import starting_activity
from claude_bridge.router import ThreadRouter
from claude_bridge.spaces import ProjectSpaces
from tests.secret_kinds import Planted, example_of_each, leaked, secrets

PAYLOADS = Path(__file__).resolve().parents[3] / "shared" / "claude-code" / "hook-payloads"
TRANSCRIPT = Path(__file__).resolve().parents[1] / "fixtures" / "transcript.jsonl"
SESSION = "3eb5f21d-5dcb-43a8-9ab8-939331f73b6b"
HOOK_SECRET = "0f3c9a7e5b1d4f2a8c6e0b9d7f5a3c1e"
SCRUB = scrubber_for(RedactConfig())
SETTINGS = settings(
    # SCRUB_PROPERTY_EXAMPLES=5000 for a longer run on demand.
    max_examples=int(os.environ.get("SCRUB_PROPERTY_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class Recorder:
    """A stand-in for the aiohttp session: records each request, answers like a homeserver."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []

    @asynccontextmanager
    async def request(self, method: str, url: str, *, params: Any, data: Any, headers: Any) -> Any:
        self.requests.append((method, url, dict(params or {}), data or b""))
        if "/createRoom" in url:
            answer: dict[str, Any] = {"room_id": f"!r{len(self.requests)}:localhost"}
        elif "/upload" in url:
            answer = {"content_uri": "mxc://localhost/AbCdEfGhIjKlMnOpQrStUvWx"}
        else:
            answer = {"event_id": f"$e{len(self.requests)}"}
        yield _Answer(json.dumps(answer).encode())

    def dump(self) -> str:
        return "\n".join(
            f"{m} {url} {json.dumps(p)} {body.decode('utf-8', 'replace')}"
            for m, url, p, body in self.requests
        )


class _Answer:
    status = 200

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def read(self) -> bytes:
        return self.body


def _config() -> Any:
    return parse_config(
        {
            "homeserver": {"address": "http://127.0.0.1:1", "domain": "localhost"},
            "appservice": {"as_token": "a" * 32, "hs_token": "b" * 32},
            "hooks": {"tokens": {"laptop": HOOK_SECRET}},
            "bridge": {"permissions": {"@alice:localhost": "operator"}},
        }
    )


def _client(recorder: Recorder) -> MatrixClient:
    config = _config()
    return MatrixClient(
        recorder,  # type: ignore[arg-type]
        "http://127.0.0.1:1",
        "a" * 32,
        "@claudebot:localhost",
        scrub=outgoing_scrubber(config),
    )


# --- the patterns that slipped through -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("export DB_PASS=hunter2xyz", "export DB_PASS="),
        ("db_pass: 'my secret pw'", "db_pass: '"),
        ("Db_Pass=abc123", "Db_Pass="),
        ("MYSQL_PWD=abcd", "MYSQL_PWD="),
        ('{"pass": "letmein1"}', '{"pass": "'),
        ("mysql -u root -pS3cretPw mydb", "mysql -u root -p"),
        ("mysqldump -h db -p'two words' app", "mysqldump -h db -p'"),
        ("curl -u alice:wonderland https://x", "curl -u alice:"),
        ("curl -s --user bob:pa55 https://x", "curl -s --user bob:"),
        ("https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXX", "https://hooks.slack.com/"),
        ("deploy --password hunter2", "deploy --password "),
        ("sshpass -p secretpw ssh host", "sshpass -p "),
        ("SIGNING_KEY=abcdefghijklmnop12", "SIGNING_KEY="),
        ("sk-ant-api03-abc\u200bdefghijklmnop", ""),
        ("gh\u200bp_" + "a1B2" * 9, ""),
        ("c2stYW50LWFwaTAzLWFiY2RlZmdoaWprbG1ub3BxcnN0dQ==", ""),  # base64 of an Anthropic key
        ("REJfUEFTU1dPUkQ9aHVudGVyMgo=", ""),  # base64 of DB_PASSWORD=hunter2
        (f"echo {HOOK_SECRET}", "echo "),  # the bridge's own hook token
    ],
)
def test_patterns_that_slipped_through(text: str, kept: str) -> None:
    scrub = outgoing_scrubber(_config())
    scrubbed = scrub.text(text)
    assert scrubbed.startswith(kept + "[redacted]"), scrubbed
    assert scrub.text(scrubbed) == scrubbed  # idempotent: a second pass changes nothing


@pytest.mark.parametrize(
    "text",
    [
        "All tests pass: 42 passed",
        "tests pass = ok",
        "primary_key=True",
        "--max-tokens 100",
        "mysql -u root -p mydb",
        "bypass=true, compass: north",
        "👨\u200d👩\u200d👧 family, ❤\ufe0f",  # joiners and selectors between emoji stay
        "/home/dev/projects/demo-app/src/components/Button.tsx",
        "session 3eb5f21d-5dcb-43a8-9ab8-939331f73b6b",
        "QmFzZTY0IGlzIGZpbmUgd2hlbiBpdCBob2xkcyBub3RoaW5n",  # base64 of harmless text
    ],
)
def test_ordinary_text_is_kept(text: str) -> None:
    assert SCRUB.text(text) == text


def test_known_secrets_are_hidden_even_with_redaction_off() -> None:
    config = _config()
    config.bridge.mirror = config.bridge.mirror.model_copy(
        update={"redact": RedactConfig(enabled=False)}
    )
    scrub = outgoing_scrubber(config)
    assert scrub.text(f"token {HOOK_SECRET} and ghp_{'x1' * 18}") == (
        f"token [redacted] and ghp_{'x1' * 18}"
    )


def test_the_database_password_is_a_known_secret() -> None:
    config = _config()
    config.database = "postgres://bridge:Pw8random9Xy@db.internal/bridge"
    assert outgoing_scrubber(config).text("it is Pw8random9Xy") == "it is [redacted]"


# --- what of a body is scrubbed ------------------------------------------------------------


def test_identifiers_stay_and_text_is_scrubbed() -> None:
    key = "ghp_" + "Zq8Lm2" * 6
    edit = edit_content(
        "$original:localhost",
        {
            "msgtype": "m.notice",
            "body": f"run {key}",
            "format": "org.matrix.custom.html",
            "formatted_body": f"<code>run {key}</code>",
            "m.mentions": {"user_ids": ["@alice:localhost"]},
        },
    )
    out = scrub_body(SCRUB, edit)
    assert key not in json.dumps(out)
    assert out["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$original:localhost"}
    assert out["m.new_content"]["formatted_body"] == "<code>run [redacted]</code>"
    assert out["formatted_body"] == "* <code>run [redacted]</code>"
    assert out["m.mentions"] == {"user_ids": ["@alice:localhost"]}
    assert scrub_body(SCRUB, edit) == out  # deterministic: a retry sends the same bytes
    assert scrub_body(SCRUB, out) == out


def test_html_that_hides_a_secret_in_entities_falls_back_to_plain_text() -> None:
    content = {
        "msgtype": "m.text",
        "body": "password='hunter2 zeta'",
        "format": "org.matrix.custom.html",
        "formatted_body": "password=&#x27;hunter2 zeta&#x27;",
    }
    out = scrub_body(SCRUB, content)
    assert "format" not in out and "formatted_body" not in out
    assert out["body"] == "password='[redacted]'"


def test_create_room_keeps_its_structure() -> None:
    body = {
        "room_alias_name": "claude_3eb5f21d",
        "name": "demo · DB_PASS=zz9zz9zz9",
        "topic": "cwd /srv/ghp_" + "Ab1" * 12,
        "invite": ["@alice:localhost"],
        "initial_state": [
            {
                "type": "org.claude_bridge.thread",
                "state_key": "",
                "content": {"cwd": "AKIA" + "Q" * 16},
            },
        ],
        "power_level_content_override": {"users": {"@claudebot:localhost": 100}},
    }
    out = scrub_body(SCRUB, body)
    assert out["name"] == "demo · DB_PASS=[redacted]"
    assert out["topic"] == "cwd /srv/[redacted]"
    assert out["initial_state"][0] == {
        "type": "org.claude_bridge.thread",
        "state_key": "",
        "content": {"cwd": "[redacted]"},
    }
    assert out["invite"] == body["invite"]
    assert out["room_alias_name"] == body["room_alias_name"]
    assert out["power_level_content_override"] == body["power_level_content_override"]


async def test_every_client_call_is_scrubbed() -> None:
    recorder = Recorder()
    client = _client(recorder)
    key = "sk-ant-api03-" + "Mk4Pz8" * 8
    await client.set_displayname("@claude_x:localhost", f"Claude · {key}")
    await client.create_room("@claude_x:localhost", {"name": key, "topic": key})
    await client.send_event(
        "@claude_x:localhost", "!r:localhost", "m.room.message", {"body": key}, "t1"
    )
    await client.send_state(
        "@claude_x:localhost", "!r:localhost", "m.room.topic", "", {"topic": key}
    )
    await client.upload("@claude_x:localhost", key.encode(), f"{key}.txt", "text/plain")
    await client.request(
        "POST", "/_matrix/client/v3/rooms/!r/kick", {"user_id": "@m:x", "reason": key}
    )
    assert len(recorder.requests) == 6
    assert key not in recorder.dump() and "Mk4Pz8Mk" not in recorder.dump()
    # An image is sent as it is: scrubbing would corrupt it.
    png = b"\x89PNG\r\n" + key.encode()
    await client.upload("@claude_x:localhost", png, "a.png", "image/png")
    assert recorder.requests[-1][3] == png


def test_session_ids_that_hold_a_secret_are_refused() -> None:
    base = {"hook_event_name": "Stop", "cwd": "/tmp"}
    assert unstorable(parse_hook_event({**base, "session_id": SESSION})) is None
    problem = unstorable(parse_hook_event({**base, "session_id": "ghp_" + "Ab1" * 12}))
    assert problem is not None and problem.startswith("session_id:")


# --- the property: any secret, any field, any event ----------------------------------------


def _bases() -> list[dict[str, Any]]:
    """Every captured payload, plus one per event kind the capture lacks."""
    found = [json.loads(p.read_text()) for p in sorted(PAYLOADS.glob("*.json"))]
    names = {b["hook_event_name"] for b in found}
    made: dict[str, dict[str, Any]] = {
        "PostToolUseFailure": {
            "tool_name": "Bash",
            "tool_input": {"command": "make deploy"},
            "tool_use_id": "toolu_f",
            "error": "exit 2",
        },
        "PermissionDenied": {"tool_name": "Bash", "tool_input": {"command": "rm -rf /"}},
        "StopFailure": {"error": "rate_limit", "error_details": "429 from the API"},
        **{
            name: {field: f"{field} value" for field in fields}
            for name, (_, _, fields) in MINOR_EVENTS.items()
        },
    }
    common = {"session_id": SESSION, "cwd": "/home/dev/projects/demo-app"}
    found += [
        {**common, "hook_event_name": name, **fields}
        for name, fields in made.items()
        if name not in names
    ]
    # What catch-up makes of a transcript (tests/fixtures): its marker and its events.
    items = parse_items(TRANSCRIPT.read_bytes(), SESSION)
    found += synthetic_events(items, 2, parse_hook_event({**common, "hook_event_name": "Stop"}))
    return found


BASES = _bases()
RENDER = with_catchup_marker(with_room_status(render_event))  # as the bridge's delivery renders


def _string_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for k, v in value.items():
            if path or k != "session_id":  # session ids: refused, see the test above
                yield from _string_paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _string_paths(v, (*path, i))


def _plant(payload: dict[str, Any], path: tuple[Any, ...], text: str) -> dict[str, Any]:
    data = json.loads(json.dumps(payload))
    node = data
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = text
    return data


@st.composite
def planted_events(draw: st.DrawFn) -> tuple[dict[str, Any], Planted]:
    base = draw(st.sampled_from(BASES))
    secret = draw(secrets())
    paths = [*_string_paths(base), ("tool_input", "extra_field"), ("an_extra_field",)]
    path = draw(st.sampled_from(paths))
    if path[0] == "tool_input" and not isinstance(base.get("tool_input"), dict):
        path = ("an_extra_field",)
    old = base
    for step in path:
        old = old.get(step, "") if isinstance(old, dict) else old[step]
    old = old if isinstance(old, str) else ""
    text = draw(
        st.sampled_from(
            [secret.text, f"{old}\n{secret.text}", f"{secret.text} {old}", f"x {secret.text} y"]
        )
    )
    return _plant(base, path, text), secret


async def _mirror(payload: dict[str, Any]) -> Recorder:
    """What the bridge sends for ``payload``: ghost, room, space, then the rendered messages."""
    recorder = Recorder()
    client = _client(recorder)
    config = _config()
    permissions = Permissions(config.bridge.permissions)
    spaces = ProjectSpaces(
        _Spaces(),  # type: ignore[arg-type]
        client,
        permissions,
        bot_mxid="@claudebot:localhost",
        domain="localhost",
    )
    names = config.matrix_names()
    router = ThreadRouter(config, names, None, client, permissions, spaces)  # type: ignore[arg-type]
    event = parse_hook_event(payload)
    thread = router.new_thread(event, "laptop")
    await router.ensure_ghost(thread.ghost_mxid, router.displayname(thread))
    space = await spaces.space_for(thread)
    thread.room_id, _ = await router._create_room(thread, starting_activity(event), space)
    await spaces.link(thread)
    extra = {"session_id": thread.session_id, "cwd": thread.project_path, "activity": None}
    ctx = RenderContext(
        thread_id=thread.id, project=thread.project_name or "Claude Code", extra=extra
    )
    for i, msg in enumerate(RENDER(event, ctx)):
        content = dict(msg.content)
        if msg.attachment is not None:
            a = msg.attachment
            content["url"] = await client.upload(thread.ghost_mxid, a.data, a.filename, a.mimetype)
        if msg.state_key is not None:
            await client.send_state(
                thread.ghost_mxid, thread.room_id, msg.event_type, msg.state_key, content
            )
            continue
        await client.send_event(thread.ghost_mxid, thread.room_id, msg.event_type, content, f"t{i}")
        edit = edit_content(f"$e{i}", content)  # the same message as an edit
        await client.send_event(thread.ghost_mxid, thread.room_id, msg.event_type, edit, f"t{i}e")
    return recorder


class _Spaces:
    def __init__(self) -> None:
        self.rows: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.rows.get(key)

    async def add(self, key: str, room_id: str, name: str) -> str:
        self.rows[key] = room_id
        return room_id


@SETTINGS
@given(planted_events())
async def test_no_planted_secret_reaches_any_matrix_request(
    case: tuple[dict[str, Any], Planted],
) -> None:
    payload, secret = case
    try:
        parse_hook_event(payload)
    except HookInputError:  # the hook server refuses it (422): nothing is sent
        return
    recorder = await _mirror(payload)
    assert recorder.requests, "nothing was sent"
    found = leaked(secret, recorder.dump())
    assert found is None, f"{secret.kind} leaked ({found!r}) from {secret.text!r}"


@SETTINGS
@given(secrets(), st.sampled_from(["text", "title", "project_path", "sender", "error"]))
def test_no_planted_secret_leaves_in_an_api_answer(secret: Planted, field: str) -> None:
    body = {
        "thread": {"id": "t", field: f"see {secret.text}"},
        "messages": [{"cursor": "MTcwMC5oLjE", "text": f"{secret.text}\nmore", field: secret.text}],
        "next_before": "MTcwMC5oLjE",
    }
    out = _serialise(body)
    assert leaked(secret, out) is None
    assert json.loads(out)["next_before"] == "MTcwMC5oLjE"  # cursors pass unchanged


def _serialise(body: dict[str, Any]) -> str:
    from claude_bridge.api.threads import _scrub_json

    return json.dumps(_scrub_json(SCRUB, body))


async def test_the_api_serialiser_scrubs_every_json_answer_but_hook_answers() -> None:
    key = example_of_each()[0]
    app = web.Application(middlewares=[scrub_responses(SCRUB)])

    async def answer(_: web.Request) -> web.Response:
        return web.json_response({"error": f"no thread {key.text!r}", "next_before": "abc"})

    app.router.add_get("/claude/v1/threads/x", answer)
    app.router.add_get("/health", answer)
    app.router.add_post("/claude/v1/hooks", answer)
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        for path in ("/claude/v1/threads/x", "/health"):
            resp = await http.get(path)
            text = await resp.text()
            assert leaked(key, text) is None and "[redacted]" in text, path
        # A hook answer goes back to the session that asked, with operators' words verbatim.
        resp = await http.post("/claude/v1/hooks")
        assert key.text in await resp.text()


@pytest.mark.parametrize("planted", example_of_each(), ids=lambda p: p.kind)
async def test_each_kind_through_every_event(planted: Planted) -> None:
    """Deterministic companion of the property test: every kind in every string of every base."""
    for base in BASES:
        for path in _string_paths(base):
            recorder = await _mirror(_plant(base, path, f"x {planted.text} y"))
            found = leaked(planted, recorder.dump())
            assert found is None, f"{planted.kind} via {base['hook_event_name']}.{path}: {found!r}"


def test_markdown_exports_are_scrubbed_json_exports_verbatim(tmp_path: Path) -> None:
    """Markdown is for reading and sharing; JSON is a backup that must restore as it was."""
    from claude_bridge.cli import main
    from claude_bridge.store import Outbox, Thread, ThreadStore, create_database

    url = f"sqlite:{tmp_path / 'bridge.db'}"
    planted = example_of_each()

    async def prepare() -> None:
        db = create_database(url)
        await db.start()
        await ThreadStore(db).ensure(
            Thread("t1", "T1", "@claude-t1:hs", "#claude-thread-t1:hs", project_path="/src/x")
        )
        prompt = json.dumps({"prompt": "\n".join(p.text for p in planted)})
        await Outbox(db).append("t1", "UserPromptSubmit", prompt, "laptop")
        await db.stop()

    import asyncio

    asyncio.run(prepare())  # the commands run their own event loop, as from a shell
    md, js = tmp_path / "t1.md", tmp_path / "t1.json"
    config = tmp_path / "missing.yaml"  # no config: the default patterns
    assert (
        main(
            [
                "export",
                "-c",
                str(config),
                "--database",
                url,
                "--all",
                "--format",
                "markdown",
                "-o",
                str(md),
            ]
        )
        == 0
    )
    assert main(["export", "-c", str(config), "--database", url, "--all", "-o", str(js)]) == 0
    text = md.read_text()
    assert "🧑‍💻 **Prompt**" in text and "[redacted]" in text
    assert [p.kind for p in planted if leaked(p, text)] == []
    row = json.loads(js.read_text())["threads"][0]["tables"]["hook_event"][0]
    assert json.loads(row["payload"])["prompt"] == "\n".join(p.text for p in planted)
