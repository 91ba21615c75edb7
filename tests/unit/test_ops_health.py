"""The health report and the metrics, on real stores (SQLite and Postgres)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from mautrix.util.async_db import Database

from claude_bridge import metrics
from claude_bridge.matrix.client import MatrixError
from claude_bridge.ops.health import HealthReporter
from claude_bridge.store import MatrixEventStore, Outbox, Thread, ThreadStore, create_database
from claude_bridge.store.approvals import ApprovalStore
from claude_bridge.store.session_messages import SessionInbox

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Probes:
    live: bool = True
    ready: bool = False


class Homeserver:
    def __init__(self) -> None:
        self.error: MatrixError | None = None

    async def versions(self) -> dict[str, Any]:
        if self.error:
            raise self.error
        return {"versions": ["v1.11"]}


class Workers:
    active_threads = 3


@pytest.fixture
async def db(store_url: str) -> AsyncIterator[Database]:
    database = create_database(store_url)
    await database.start()
    yield database
    await database.stop()


def _value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_ready_follows_start_up_and_the_database(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    probes = Probes()
    outbox, matrix_events = Outbox(db), MatrixEventStore(db)
    health = HealthReporter(db, outbox, matrix_events, probes, homeserver_cache_seconds=0)
    homeserver = Homeserver()
    health.watch_homeserver(homeserver)

    report = await health.report()
    assert report["live"] is True and report["ready"] is False  # start-up checks not passed yet
    assert report["components"]["database"]["ok"] is True
    assert report["components"]["homeserver"]["ok"] is True
    assert report["components"]["outbound"]["backlog"] == 0
    assert report["components"]["outbound"]["oldest_age_seconds"] is None
    assert report["components"]["inbound"] == {"unprocessed": 0}

    await ThreadStore(db).ensure(Thread("t1", "T1", "@claude-t1:localhost", "#claude-thread-t1:x"))
    await outbox.append("t1", "Stop", "{}", "laptop")
    await matrix_events.store_transaction(
        "txn1", [{"event_id": "$e", "room_id": "!r", "sender": "@a:x", "type": "m.room.message"}]
    )
    health.mark_started(Workers())
    report = await health.report()
    assert report["ready"] is True and probes.ready is True
    outbound = report["components"]["outbound"]
    assert outbound["backlog"] == 1 and outbound["oldest_age_seconds"] >= 0
    assert outbound["delivery_workers"] == 3 and outbound["threads_active"] == 1
    assert report["components"]["inbound"] == {"unprocessed": 1}

    # The homeserver going away is reported, but does not make the bridge unready.
    homeserver.error = MatrixError("GET /versions: connection refused")
    report = await health.report()
    assert report["ready"] is True
    assert report["components"]["homeserver"] == {
        "ok": False,
        "error": "GET /versions: connection refused",
        "last_send_at": report["components"]["homeserver"]["last_send_at"],
        "last_send_age_seconds": report["components"]["homeserver"]["last_send_age_seconds"],
    }

    await health.refresh_metrics()
    assert _value("claude_bridge_outbox_backlog") == 1
    assert _value("claude_bridge_inbox_backlog") == 1
    assert _value("claude_bridge_threads_active") == 1
    assert _value("claude_bridge_delivery_workers") == 3

    # The database going away makes it unready, for /health and mautrix's probe alike.
    async def refused(*_: Any) -> None:
        raise ConnectionRefusedError("database away")

    monkeypatch.setattr(db, "fetchval", refused)
    report = await health.report()
    assert report["ready"] is False and probes.ready is False
    assert report["components"]["database"] == {
        "ok": False,
        "error": "ConnectionRefusedError('database away')",
    }
    assert "outbound" not in report["components"]
    monkeypatch.undo()
    assert (await health.report())["ready"] is True


def test_unknown_event_names_share_one_label() -> None:
    assert metrics.hook_event_label("PreToolUse") == "PreToolUse"
    assert metrics.hook_event_label("EventFromTheFuture") == "other"
    assert metrics.hook_event_label(None) == "unparsed"
    before = _value("claude_bridge_hook_events_total", event="other", outcome="accepted")
    metrics.observe_hook("EventFromTheFuture", 200, 0.001)
    metrics.observe_hook(None, 401, 0.0001)
    after = _value("claude_bridge_hook_events_total", event="other", outcome="accepted")
    assert after == before + 1
    assert _value("claude_bridge_hook_events_total", event="unparsed", outcome="unauthorized") >= 1


async def test_the_ack_ends_when_the_answer_is_written_not_when_its_receipt_came(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An answer carrying operators' messages is written by the handler, which then waits for
    the host's receipt (hooks/receipt.py): Claude Code had its answer at the write."""
    clock = iter([100.0, 103.0])
    monkeypatch.setattr(metrics.time, "perf_counter", lambda: next(clock))

    async def plain(_: web.Request) -> web.StreamResponse:
        return web.json_response({})

    async def waits_for_receipt(request: web.Request) -> web.StreamResponse:
        request[metrics.HOOK_ANSWERED_AT] = 100.25  # written; then the receipt took 2.75 s
        return web.json_response({})

    for handler, took in ((plain, 3.0), (waits_for_receipt, 0.25)):
        clock = iter([100.0, 103.0])
        count = _value("claude_bridge_hook_ack_seconds_count")
        total = _value("claude_bridge_hook_ack_seconds_sum")
        request = make_mocked_request("POST", "/claude/v1/hooks")
        await metrics.hook_metrics_middleware(request, handler)
        assert _value("claude_bridge_hook_ack_seconds_count") == count + 1
        assert _value("claude_bridge_hook_ack_seconds_sum") - total == pytest.approx(took)


@pytest.mark.parametrize(
    ("status", "cause"),
    [(0, "unreachable"), (429, "rate_limited"), (502, "server_error"), (403, "rejected")],
)
def test_retry_causes(status: int, cause: str) -> None:
    before = _value("claude_bridge_delivery_retries_total", cause=cause)
    metrics.observe_matrix_retry(MatrixError("x", status=status))
    assert _value("claude_bridge_delivery_retries_total", cause=cause) == before + 1


async def test_timed_send_records_latency_outcome_and_last_success() -> None:
    @metrics.timed_send("message")
    async def send(fail: bool) -> str:
        if fail:
            raise MatrixError("nope", status=500)
        return "$event"

    ok = _value("claude_bridge_matrix_send_seconds_count", kind="message", outcome="ok")
    err = _value("claude_bridge_matrix_send_seconds_count", kind="message", outcome="error")
    metrics.last_send_success = None
    assert await send(False) == "$event"
    with pytest.raises(MatrixError):
        await send(True)
    assert _value("claude_bridge_matrix_send_seconds_count", kind="message", outcome="ok") == ok + 1
    assert (
        _value("claude_bridge_matrix_send_seconds_count", kind="message", outcome="error")
        == err + 1
    )
    assert metrics.last_send_success is not None


async def test_metrics_endpoint_survives_a_failing_refresher_and_names_are_documented() -> None:
    calls = []

    async def broken() -> None:
        calls.append(1)
        raise ConnectionError("database away")

    endpoint = metrics.MetricsEndpoint([broken])
    response = await endpoint.handle(make_mocked_request("GET", "/metrics"))
    assert isinstance(response, web.Response) and response.status == 200 and calls == [1]
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    openmetrics = await endpoint.handle(
        make_mocked_request("GET", "/metrics", headers={"Accept": "application/openmetrics-text"})
    )
    assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")
    text = response.body.decode()  # type: ignore[union-attr]
    ours = sorted(set(re.findall(r"^# TYPE (claude_bridge_\w+) ", text, re.M)))
    assert len(ours) == 16
    operations = (ROOT / "docs" / "operations.md").read_text()
    for name in ours:
        assert f"`{name}" in operations, f"{name} is not in docs/operations.md's metrics table"


async def test_approvals_and_messages_to_claude_are_counted_from_their_tables(
    db: Database,
) -> None:
    counts = metrics.StoredCounts()
    await ThreadStore(db).ensure(Thread("t1", "T1", "@claude-t1:localhost", "#claude-thread-t1:x"))
    outbox = Outbox(db)
    if await db.table_exists("approval"):
        for n, state in enumerate(["pending", "allowed", "denied", "denied", "timed_out"]):
            hook = await outbox.append("t1", "PermissionRequest", "{}", "laptop")
            await db.execute(
                "INSERT INTO approval (hook_event_id, thread_id, call_key, tool_name, request, "
                "state, created_at, expires_at) VALUES ($1, 't1', $2, 'Bash', '{}', $3, 1, 2)",
                hook,
                f"k{n}",
                state,
            )
        for n, delivered in enumerate([None, 5, 6]):
            await db.execute(
                "INSERT INTO session_message (event_id, thread_id, room_id, sender, body, "
                "received_at, delivered_at) VALUES ($1, 't1', '!r', '@a:x', 'hi', 1, $2)",
                f"$m{n}",
                delivered,
            )
        want = {"pending": 1, "allowed": 1, "denied": 2, "timed_out": 1, "to_claude": 2}
    else:  # a schema without the control tables: the metrics exist, at 0
        want = {"pending": 0, "allowed": 0, "denied": 0, "timed_out": 0, "to_claude": 0}
    counts.update(
        await ApprovalStore(db).count_by_state(), await SessionInbox(db).count_delivered()
    )
    families = {m.name: m for m in counts.collect()}
    samples = {
        (s.name, s.labels.get("decision")): s.value for m in families.values() for s in m.samples
    }
    assert samples[("claude_bridge_approvals_pending", None)] == want["pending"]
    assert samples[("claude_bridge_approvals_decided_total", "allowed")] == want["allowed"]
    assert samples[("claude_bridge_approvals_decided_total", "denied")] == want["denied"]
    assert samples[("claude_bridge_approvals_timed_out_total", None)] == want["timed_out"]
    assert samples[("claude_bridge_messages_to_claude_total", None)] == want["to_claude"]
