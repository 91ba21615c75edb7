"""The collector's schedule: older collections at quiet moments, bounded when none comes."""

from __future__ import annotations

import asyncio
import gc

import pytest

from claude_bridge import collector
from claude_bridge.collector import (
    BACKSTOP_THRESHOLDS,
    FULL_FORCE_AFTER,
    FULL_MIN_INTERVAL,
    FULL_SHARE,
    MIDDLE_AT_MOST,
    MIDDLE_WHEN_QUIET,
    QUIET,
    YOUNG_AT_LEAST_EVERY,
    YOUNG_WHILE_BUSY,
    Activity,
    QuietCollector,
)
from claude_bridge.metrics import REGISTRY


def _pauses(generation: str) -> float:
    count = REGISTRY.get_sample_value(
        "claude_bridge_gc_pause_seconds_count", {"generation": generation}
    )
    return count or 0.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class FakeGC:
    """The collector's counts as ``gc.get_count`` gives them; a collection resets them."""

    def __init__(self, clock: Clock, full_takes: float = 0.0) -> None:
        self.young = 0  # young collections since the last middle one
        self.middle = 0  # middle collections since the last full one
        self.ran: list[int] = []
        self.clock = clock
        self.full_takes = full_takes
        self.last: float | None = None  # None: a young collection just ran, automatically

    def last_collection(self) -> float:
        return self.clock.now if self.last is None else self.last

    def counts(self) -> tuple[int, int, int]:
        return (0, self.young, self.middle)

    def collect(self, generation: int) -> int:
        self.ran.append(generation)
        self.last = self.clock.now
        if generation == 0:
            self.young += 1
            return 0
        self.young = 0
        if generation == 2:
            self.middle = 0
            self.clock.now += self.full_takes
        else:
            self.middle += 1
        return 0


def _collector(full_takes: float = 0.0) -> tuple[QuietCollector, FakeGC, Clock, Activity]:
    clock = Clock()
    fake = FakeGC(clock, full_takes)
    activity = Activity()
    c = QuietCollector(
        activity,
        clock=clock,
        counts=fake.counts,
        collect=fake.collect,
        last_collection=fake.last_collection,
    )
    return c, fake, clock, activity


def _busy(activity: Activity, clock: Clock) -> None:
    activity.last = clock.now


def test_a_middle_collection_waits_for_a_quiet_moment() -> None:
    c, fake, clock, activity = _collector()
    fake.young = MIDDLE_WHEN_QUIET
    _busy(activity, clock)
    assert c.tick() is None  # a hook just came
    clock.now += QUIET / 2
    assert c.tick() is None
    clock.now += QUIET / 2
    assert c.tick() == 1
    assert fake.ran == [1]


def test_a_quiet_moment_with_little_to_collect_collects_nothing() -> None:
    c, fake, _, _ = _collector()
    fake.young = MIDDLE_WHEN_QUIET - 1
    assert c.tick() is None and fake.ran == []


def test_a_bridge_never_quiet_still_gets_its_middle_collection() -> None:
    c, fake, clock, activity = _collector()
    fake.young = MIDDLE_AT_MOST - 1
    _busy(activity, clock)
    assert c.tick() is None
    fake.young = MIDDLE_AT_MOST
    assert c.tick() == 1


def test_a_full_collection_is_due_after_the_interval_and_runs_when_quiet() -> None:
    c, fake, clock, activity = _collector()
    fake.middle = 3
    clock.now += FULL_MIN_INTERVAL - 1
    assert c.tick() is None  # not due yet
    clock.now += 1
    _busy(activity, clock)
    assert c.tick() is None  # due, but a hook just came
    clock.now += QUIET
    assert c.tick() == 2
    assert fake.ran == [2] and fake.middle == 0


def test_a_full_collection_runs_anyway_when_no_quiet_moment_comes() -> None:
    c, fake, clock, activity = _collector()
    fake.middle = 1
    clock.now += FULL_MIN_INTERVAL
    _busy(activity, clock)
    assert c.tick() is None
    clock.now += FULL_FORCE_AFTER - 1
    _busy(activity, clock)
    assert c.tick() is None
    clock.now += 1
    _busy(activity, clock)
    assert c.tick() == 2


def test_a_long_full_collection_spaces_the_next_to_keep_its_share_of_the_time() -> None:
    c, fake, clock, _ = _collector(full_takes=0.5)
    fake.middle = 1
    clock.now += FULL_MIN_INTERVAL
    assert c.tick() == 2
    assert c.last_full_seconds == pytest.approx(0.5)
    spacing = 0.5 / FULL_SHARE
    assert spacing > FULL_MIN_INTERVAL
    fake.middle, fake.last = 1, None
    clock.now += spacing - 1
    assert c.tick() is None
    clock.now += 1
    assert c.tick() == 2


def test_nothing_happened_since_the_last_full_collection_runs_none() -> None:
    c, fake, clock, _ = _collector()
    clock.now += FULL_MIN_INTERVAL * 10
    assert c.tick() is None and fake.ran == []


def test_a_young_collection_comes_at_least_every_second_when_quiet() -> None:
    """Frees of long-lived objects cancel allocations in Python's count: without this the young
    generation grows with no collection while held connections are replaced."""
    c, fake, clock, _ = _collector()
    fake.last = clock.now
    clock.now += YOUNG_AT_LEAST_EVERY - 0.01
    assert c.tick() is None
    clock.now += 0.01
    assert c.tick() == 0
    assert c.tick() is None  # it just ran
    clock.now += YOUNG_AT_LEAST_EVERY
    assert c.tick() == 0
    assert fake.ran == [0, 0]


def test_a_busy_bridge_collects_young_four_times_as_often() -> None:
    """While hooks come, each young collection walks a quarter of a second's survivors: a
    quarter of the pause a hook may wait out."""
    c, fake, clock, activity = _collector()
    fake.last = clock.now
    clock.now += YOUNG_WHILE_BUSY - 0.01
    _busy(activity, clock)
    assert c.tick() is None
    clock.now += 0.01
    _busy(activity, clock)
    assert c.tick() == 0
    clock.now += YOUNG_WHILE_BUSY
    assert c.tick() == 0  # still within QUIET of the last hook: busy
    clock.now += YOUNG_WHILE_BUSY + QUIET
    assert c.tick() is None  # quiet now: once a second again
    assert fake.ran == [0, 0]


def test_activity_notes_now() -> None:
    activity = Activity()
    activity.note()
    assert activity.last > 0


async def test_started_it_owns_the_older_generations_and_times_every_pause() -> None:
    """Against the real collector: start sets the backstop thresholds and the pause histogram
    sees a collection; stop takes its callback out again."""
    before = gc.get_threshold()
    c = QuietCollector()
    c.start()
    try:
        assert gc.get_threshold() == BACKSTOP_THRESHOLDS
        paused = _pauses("1")
        gc.collect(1)
        assert _pauses("1") == paused + 1
        assert collector._time_pause in gc.callbacks
    finally:
        await c.stop()
        gc.set_threshold(*before)
    assert collector._time_pause not in gc.callbacks
    assert c._task is None
    assert gc.get_threshold() == before


async def test_a_failing_collection_does_not_stop_the_schedule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []
    three = asyncio.Event()

    def collect(generation: int) -> int:
        calls.append(generation)
        if len(calls) >= 3:
            three.set()
        raise RuntimeError("a finaliser raised")

    monkeypatch.setattr(collector, "TICK", 0.001)
    before = gc.get_threshold()
    c = QuietCollector(Activity(), counts=lambda: (0, MIDDLE_AT_MOST, 0), collect=collect)
    c.start()
    try:
        async with asyncio.timeout(30):
            await three.wait()
    finally:
        await c.stop()
        gc.set_threshold(*before)


async def test_only_a_known_tokens_hook_request_counts_as_activity() -> None:
    """Requests without a valid hook token must not keep the bridge from a quiet moment."""
    from aiohttp.test_utils import TestClient, TestServer

    from claude_bridge.config import HooksConfig
    from claude_bridge.hooks.server import HookServer

    server = HookServer(HooksConfig(tokens={"host": "s3cret-token"}), ingest=None)  # type: ignore[arg-type]
    async with TestClient(TestServer(server.app)) as client:
        collector.ACTIVITY.last = float("-inf")
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            async with client.post("/claude/v1/hooks", data=b"{}", headers=headers) as r:
                assert r.status == 401
        assert collector.ACTIVITY.last == float("-inf")
        async with client.post(
            "/claude/v1/hooks", data=b"not json", headers={"Authorization": "Bearer s3cret-token"}
        ) as r:
            assert r.status == 400
        assert collector.ACTIVITY.last > 0
