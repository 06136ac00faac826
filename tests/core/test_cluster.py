"""Which instances hold a limited SMSC's binds (core.cluster.should_hold)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.cluster import should_hold


@pytest.mark.parametrize(("me", "limit", "live", "holding", "holds"), [
    ("b", 0, {"a", "b"}, [], True),  # no limit: everyone binds
    ("a", 1, {"a", "b"}, [], True),  # nobody holds: the first in line takes it
    ("b", 1, {"a", "b"}, [], False),
    ("b", 1, {"a", "b"}, ["b"], True),  # a holder keeps it, even when not first in line
    ("a", 1, {"a", "b"}, ["b"], False),
    ("a", 1, {"a", "b"}, ["c"], True),  # c is dead: its place is free
    ("b", 1, {"a", "b"}, ["a", "b"], False),  # two hold one place: the later one lets go
    ("a", 1, {"a", "b"}, ["a", "b"], True),
    ("c", 2, {"a", "b", "c"}, ["a"], False),  # one free place: b is next in line
    ("b", 2, {"a", "b", "c"}, ["a"], True),
])
def test_should_hold(me: str, limit: int, live: set[str], holding: list[str],
                     holds: bool) -> None:
    assert should_hold(me, limit=limit, live=live, holding=holding) is holds


@given(st.sets(st.sampled_from("abcdefgh"), min_size=1), st.integers(1, 4),
       st.lists(st.sampled_from("abcdefghij"), max_size=6))
def test_one_picture_settles_on_the_limit(live: set[str], limit: int,
                                          holding: list[str]) -> None:
    """All instances reading the same picture: never more holders than the limit after one
    round, and after a second round (the first's decisions published) exactly
    min(limit, live)."""
    first = {i for i in live if should_hold(i, limit=limit, live=live, holding=holding)}
    assert len(first) <= max(limit, len(set(holding) & live))
    second = {i for i in live if should_hold(i, limit=limit, live=live,
                                             holding=sorted(first))}
    assert len(second) == min(limit, len(live))
    third = {i for i in live if should_hold(i, limit=limit, live=live,
                                            holding=sorted(second))}
    assert third == second  # settled: nobody moves a working bind
