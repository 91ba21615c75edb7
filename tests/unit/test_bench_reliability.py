"""The reliability benchmark holds each fault test's figures to their target, worst run first."""

from __future__ import annotations

from pathlib import Path

from bench.reliability import FAULT_TARGETS, FAULT_TESTS, fault_rows


def test_every_target_reads_a_figure_its_test_reports() -> None:
    root = Path(__file__).resolve().parents[2]
    sources = "".join((root / t.split("::")[0]).read_text() for t in FAULT_TESTS)
    for target in FAULT_TARGETS:
        assert f'"{target.test}"' in sources, target.test
        assert f"{target.key}=" in sources, target.key


def test_the_worst_run_decides_and_a_missing_figure_is_an_error() -> None:
    figures = [
        {"test": "hung_send_retried", "request_timeout_s": 5.0, "delivered_after_s": 5.3},
        {"test": "hung_send_retried", "request_timeout_s": 5.0, "delivered_after_s": 9.5},
        {"test": "homeserver_outage", "ack_p99_ms": 27.0, "first_delivery_after_restart_s": 0.4},
    ]
    rows = {r.id: r for r in fault_rows(figures)}
    retried = rows["fault.hung.retried"]
    assert (retried.value, retried.target, retried.status) == (9.5, 9.0, "fail")
    assert retried.detail["runs"] == [5.3, 9.5]
    assert rows["fault.hs.ack_p99"].status == "pass"
    assert rows["fault.hs.resumed"].status == "pass"
    assert rows["fault.db.message"].status == "error"  # that test reported nothing
    assert len(rows) == len(FAULT_TARGETS)
