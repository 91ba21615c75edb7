"""``MaybeRows``: a thread is forgotten only by a query that no write overlapped."""

from __future__ import annotations

from claude_bridge.store.hints import MaybeRows


def test_every_thread_may_have_rows_until_loaded() -> None:
    hint = MaybeRows()
    assert hint.may_have("a")
    hint.found_none("a", hint.before_query())
    assert hint.may_have("a")  # still not loaded: nothing is known
    hint.load(["b"])
    assert not hint.may_have("a") and hint.may_have("b")


def test_a_query_that_finds_nothing_forgets_the_thread() -> None:
    hint = MaybeRows()
    hint.load(["a"])
    hint.found_none("a", hint.before_query())
    assert not hint.may_have("a")
    with hint.adding("a"):
        assert hint.may_have("a")
    assert hint.may_have("a")


def test_a_write_running_during_the_query_keeps_the_thread() -> None:
    hint = MaybeRows()
    hint.load([])
    with hint.adding("a"):  # its INSERT not committed yet when the query reads
        before = hint.before_query()
        hint.found_none("a", before)
    assert hint.may_have("a")


def test_a_write_that_began_and_ended_during_the_query_keeps_the_thread() -> None:
    hint = MaybeRows()
    hint.load([])
    before = hint.before_query()
    with hint.adding("a"):
        pass
    hint.found_none("a", before)  # the query may have read before the write committed
    assert hint.may_have("a")
    hint.found_none("a", hint.before_query())  # a later query that saw nothing: forgotten
    assert not hint.may_have("a")
