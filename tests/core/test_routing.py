"""The routing rule (bridge.core.routing): prefix tiers, accounts' lists, weights."""

from __future__ import annotations

import collections

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.routing import Routes, RouteSpec, weighted_first


def spec(name: str, *prefixes: str, weight: int = 0) -> RouteSpec:
    return RouteSpec(name, tuple(prefixes), weight)


ROUTES = Routes([spec("uk", "+44"), spec("catch1"), spec("uk-mobile", "+447", "+3519"),
                 spec("also-uk", "+44"), spec("catch2")],
                accounts={"acme": ["catch2", "uk", "nowhere"], "plain": []})


@pytest.mark.parametrize(("number", "account", "tiers"), [
    ("+447400123456", None, (("uk-mobile",), ("uk", "also-uk"), ("catch1", "catch2"))),
    ("447400123456", None, (("uk-mobile",), ("uk", "also-uk"), ("catch1", "catch2"))),
    ("+35191", None, (("uk-mobile",), ("catch1", "catch2"))),
    ("+1555", None, (("catch1", "catch2"),)),
    # an account's own list, in its order, each SMSC for what it covers
    ("+447400123456", "acme", (("catch2",), ("uk",))),
    ("+1555", "acme", (("catch2",),)),
    ("+447400123456", "plain", (("uk-mobile",), ("uk", "also-uk"), ("catch1", "catch2"))),
])
def test_tiers(number: str, account: str | None, tiers: tuple[tuple[str, ...], ...]) -> None:
    assert ROUTES.tiers(number, account) == tiers
    assert ROUTES.candidates(number, account) == [n for t in tiers for n in t]


def test_not_routable() -> None:
    only_uk = Routes([spec("uk", "+44")], accounts={"fr": ["fr-only"]})
    assert not only_uk.routable("+33612345678") and only_uk.candidates("+33612345678") == []
    assert not only_uk.routable("+447400123456", "fr")  # its list names no SMSC that covers it


@pytest.mark.parametrize(("draw", "first"), [(0.0, "a"), (0.74, "a"), (0.75, "b"),
                                             (0.999, "b")])
def test_weights_draw_the_first_route(draw: float, first: str) -> None:
    routes = Routes([spec("a", "+44", weight=3), spec("standby", "+44"),
                     spec("b", "+44", weight=1)])
    order = routes.ordered("+447400123456", None, draw)
    assert order[0] == first and sorted(order) == ["a", "b", "standby"]
    assert order[1:] == [n for n in ("a", "standby", "b") if n != first]


@given(st.lists(st.integers(0, 5), min_size=1, max_size=6), st.floats(0, 1, exclude_max=True))
def test_weighted_first_is_a_permutation_led_by_a_weighted_member(
        weights: list[int], draw: float) -> None:
    tier = tuple(f"s{i}" for i in range(len(weights)))
    out = weighted_first(tier, weights, draw)
    assert sorted(out) == sorted(tier)
    if sum(weights) and len(tier) > 1:
        assert weights[tier.index(out[0])] > 0
        assert [n for n in out[1:]] == [n for n in tier if n != out[0]]
    else:
        assert out == tier


def test_weights_spread_in_proportion() -> None:
    counts = collections.Counter(weighted_first(("a", "b"), [3, 1], i / 1000)[0]
                                 for i in range(1000))
    assert counts == {"a": 750, "b": 250}
