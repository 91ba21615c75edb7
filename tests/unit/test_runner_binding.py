"""Which runner process may speak for (token, host) (``Runners.bind``, pure in-memory logic; the
poll endpoint with it is tested end to end in tests/e2e/test_runner_poll.py and
tests/e2e/security/test_runner_attacks.py)."""

from __future__ import annotations

from typing import Any

from claude_bridge.control.runner_wire import LEGACY_INSTANCE
from claude_bridge.control.runners import MIN_GRACE, Runners
from claude_bridge.control.signals import Signals
from claude_bridge.store.database import now_ms
from claude_bridge.store.runners import Runner

KEY = ("laptop", "laptop")


def runners(seen_ago: float = 0, wait: int = 2) -> Runners:
    """A bridge's runners whose laptop runner's last poll ended ``seen_ago`` seconds ago."""
    none: Any = None
    r = Runners(none, none, Signals())
    r._known[KEY] = Runner(
        "laptop", "laptop", [], None, None, wait=wait, last_seen=now_ms() - int(seen_ago * 1000)
    )
    return r


def test_another_instance_is_refused_while_the_bound_one_is_online() -> None:
    r = runners()
    assert r.bind(KEY, "real")
    assert not r.bind(KEY, "impostor")
    assert not r.bind(KEY, LEGACY_INSTANCE)  # no header: an instance of its own
    assert r.bind(KEY, "real")  # the incumbent keeps it


def test_an_open_poll_is_online_however_old_the_last_one() -> None:
    r = runners(seen_ago=3600)
    assert r.bind(KEY, "real")
    r._open[KEY] = 1
    assert not r.bind(KEY, "impostor")


def test_a_new_instance_gets_in_once_the_bound_one_is_offline_past_the_window() -> None:
    window = max(2 * 2, MIN_GRACE)
    r = runners(seen_ago=window - 1)
    assert r.bind(KEY, "crashed")
    assert not r.bind(KEY, "restarted")
    r._known[KEY] = runners(seen_ago=window + 1)._known[KEY]
    assert r.bind(KEY, "restarted")
    r._known[KEY] = runners()._known[KEY]  # its poll was just seen
    assert not r.bind(KEY, "crashed")  # and now the old one is the outsider


def test_a_release_lets_the_next_instance_in_at_once_and_the_host_is_offline() -> None:
    r = runners()
    assert r.bind(KEY, "real")
    r._release(KEY, "impostor")  # only the bound instance can release
    assert not r.bind(KEY, "impostor")
    r._release(KEY, "real")
    assert not r.online(r._known[KEY])
    assert r.bind(KEY, "restarted")
    assert r.online(r._known[KEY])
    assert not r.bind(KEY, "real")


def test_polls_without_an_instance_id_still_work_as_one_runner() -> None:
    r = runners()
    assert r.bind(KEY, LEGACY_INSTANCE) and r.bind(KEY, LEGACY_INSTANCE)
    assert not r.bind(KEY, "new-runner")  # a legacy runner online keeps its host too


def test_nothing_bound_yet_the_first_instance_binds() -> None:
    r = runners()  # e.g. the bridge restarted: the binding is in memory only
    assert r.bind(KEY, "first")
    assert not r.bind(KEY, "second")
    assert r.bind(("laptop", "desk"), "second")  # another host is another binding
