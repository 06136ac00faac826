"""bridge.core.floods: who gets a connection slot, and how authentication failures are slowed
and refused, as tables and as properties over random histories."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.floods import (
    AuthRule,
    AuthThrottle,
    ConnectionLimits,
    Room,
    failure_delay,
    pick_victim,
    room,
)

LIMITS = ConnectionLimits(max_connections=6, per_client=3, idle_evict_s=5.0)
NOW = 1000.0


# ---------------------------------------------------------------- connections


@pytest.mark.parametrize("total, mine, expected", [
    (0, 0, Room.FREE),
    (5, 2, Room.FREE),
    (5, 3, Room.ADDRESS_FULL),  # the share comes first: an address never takes others' slots
    (6, 0, Room.LISTENER_FULL),
    (6, 3, Room.ADDRESS_FULL),
])
def test_room(total: int, mine: int, expected: Room) -> None:
    assert room(LIMITS, total, mine) is expected


def victim(where: Room, address: str, sessions: list[tuple[str, str, float | None]]
           ) -> str | None:
    counts = Counter(owner for _, owner, _ in sessions)
    return pick_victim(LIMITS, NOW, where, address, lambda a: counts[a], sessions)


IDLE = NOW - 10  # idle long enough
FRESH = NOW - 1  # idle, but not for idle_evict_s yet
WORKING = None


@pytest.mark.parametrize("where, newcomer, sessions, expected", [
    # its share used: its own longest idle, never another address's
    (Room.ADDRESS_FULL, "a", [("a1", "a", NOW - 6), ("a2", "a", NOW - 20), ("b1", "b", IDLE)],
     "a2"),
    (Room.ADDRESS_FULL, "a", [("a1", "a", WORKING), ("a2", "a", FRESH), ("b1", "b", IDLE)],
     None),
    # listener full: the address holding the most first, then the longest idle
    (Room.LISTENER_FULL, "r", [("a1", "a", IDLE), ("b1", "b", NOW - 6), ("b2", "b", NOW - 7)],
     "b2"),
    (Room.LISTENER_FULL, "r", [("a1", "a", NOW - 30), ("b1", "b", WORKING), ("b2", "b", FRESH)],
     "b2"),  # b holds more: even its fresh idle session goes before a's old one
    (Room.LISTENER_FULL, "a", [("a1", "a", WORKING), ("b1", "b", WORKING), ("b2", "b", FRESH),
                               ("c1", "c", NOW - 30)], None),
    # a working session is never taken, however many its address holds
    (Room.LISTENER_FULL, "r", [("b1", "b", WORKING), ("b2", "b", WORKING)], None),
    # a newcomer takes no slot of an address holding no more than its own
    (Room.LISTENER_FULL, "a", [("a1", "a", WORKING), ("b1", "b", IDLE)], None),
    (Room.LISTENER_FULL, "a", [("a1", "a", WORKING), ("b1", "b", IDLE), ("b2", "b", WORKING)],
     None),  # one more: no better shared after the move
    (Room.LISTENER_FULL, "a", [("a1", "a", WORKING), ("b1", "b", IDLE), ("b2", "b", WORKING),
                               ("b3", "b", WORKING)], "b1"),
    # two more: even a fresh one; holding none: any address's, idle for idle_evict_s
    (Room.LISTENER_FULL, "r", [("b1", "b", FRESH)], None),
    (Room.LISTENER_FULL, "r", [("b1", "b", IDLE)], "b1"),
    (Room.LISTENER_FULL, "r", [("b1", "b", FRESH), ("b2", "b", WORKING)], "b1"),
    (Room.LISTENER_FULL, "r", [("b1", "b", FRESH), ("b2", "b", FRESH), ("a1", "a", IDLE)],
     "b1"),
    # ... and its own idle session, when idle long enough
    (Room.LISTENER_FULL, "a", [("a1", "a", IDLE), ("b1", "b", WORKING)], "a1"),
    (Room.LISTENER_FULL, "a", [("a1", "a", FRESH), ("b1", "b", WORKING)], None),
])
def test_victims(where: Room, newcomer: str, sessions: list[tuple[str, str, float | None]],
                 expected: str | None) -> None:
    assert victim(where, newcomer, sessions) == expected


sessions_strategy = st.lists(
    st.tuples(st.sampled_from("abcd"),
              st.one_of(st.none(), st.floats(min_value=NOW - 60, max_value=NOW))),
    max_size=12)


@given(sessions_strategy, st.sampled_from("abcdr"), st.sampled_from(list(Room)[1:]))
def test_a_victim_is_idle_long_enough_and_fair(raw: list[tuple[str, float | None]],
                                                newcomer: str, where: Room) -> None:
    sessions = [(f"{owner}{i}", owner, since) for i, (owner, since) in enumerate(raw)]
    counts = Counter(owner for owner, _ in raw)
    chosen = victim(where, newcomer, sessions)
    if chosen is None:
        return
    _, owner, since = next(s for s in sessions if s[0] == chosen)
    assert since is not None
    mine = counts[newcomer]

    def may(o: str, s: float | None) -> bool:
        """The rule, stated once more: working never; own (or a full share) only after
        idle_evict_s; two more at once; an address holding none, any after idle_evict_s."""
        if s is None:
            return False
        aged = NOW - s >= LIMITS.idle_evict_s
        if o == newcomer or where is Room.ADDRESS_FULL:
            return o == newcomer and aged
        return counts[o] >= mine + 2 or (mine == 0 and aged)

    assert may(owner, since)
    best = max((counts[o], NOW - s) for _, o, s in sessions if may(o, s) and s is not None)
    assert (counts[owner], NOW - since) == best  # the richest, then the longest idle


# ---------------------------------------------------------------- authentication

RULE = AuthRule(window_s=60.0, free_failures=3, delay_s=0.5, delay_max_s=8.0,
                max_failures=10, max_failures_per_user=20)


@pytest.mark.parametrize("failures, delay", [
    (1, 0.0), (2, 0.0), (3, 0.0), (4, 0.5), (5, 1.0), (6, 2.0), (7, 4.0), (8, 8.0), (9, 8.0),
    (10, 8.0), (1000, 8.0),
])
def test_the_delay_table(failures: int, delay: float) -> None:
    assert failure_delay(RULE, failures) == delay


def test_an_address_is_refused_after_max_failures_until_the_window_passes() -> None:
    throttle = AuthThrottle(RULE)
    delays = [throttle.failed("192.0.2.1", f"user{i}", NOW + i)[1] for i in range(10)]
    assert delays == [0, 0, 0, 0.5, 1, 2, 4, 8, 8, 8]
    refused = throttle.verdict("192.0.2.1", "someone", NOW + 10)
    assert refused.refused and refused.why == "address"
    assert refused.retry_after_s == pytest.approx(50.0)  # the first failure leaves at +60
    assert not throttle.verdict("192.0.2.2", "someone", NOW + 10).refused
    assert not throttle.verdict("192.0.2.1", "someone", NOW + 60.5).refused


def test_a_user_is_refused_except_where_it_worked() -> None:
    throttle = AuthThrottle(RULE)
    throttle.succeeded("192.0.2.9", "demo", NOW)
    for i in range(20):  # a distributed guess: two failures from each of ten addresses
        throttle.failed(f"198.51.100.{i // 2}", "demo", NOW + i)
    assert throttle.verdict("203.0.113.1", "demo", NOW + 20) == (True, 40.0, "user")
    assert not throttle.verdict("192.0.2.9", "demo", NOW + 20).refused  # its relay
    assert not throttle.verdict("203.0.113.1", "other", NOW + 20).refused
    assert not throttle.verdict("203.0.113.1", "demo", NOW + 60.5).refused


def test_a_token_counts_for_its_address_only() -> None:
    throttle = AuthThrottle(RULE)
    for i in range(10):
        throttle.failed("192.0.2.1", None, NOW)
    assert throttle.verdict("192.0.2.1", None, NOW).refused
    assert not throttle.verdict("192.0.2.2", None, NOW).refused


def test_memory_is_bounded_and_expires() -> None:
    throttle = AuthThrottle(RULE, max_keys=100)
    for i in range(1000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}", f"u{i}", NOW + i * 0.001)
    assert throttle.keys() <= 200
    throttle.failed("192.0.2.1", None, NOW + 120)  # everything else left the window
    assert throttle.keys() == 1


attempts = st.lists(st.tuples(st.floats(min_value=0, max_value=300), st.sampled_from("ab"),
                              st.sampled_from(["u", "v", None])), max_size=200)


@settings(max_examples=200)
@given(attempts)
def test_no_window_holds_more_checked_failures_than_allowed(raw: list[tuple[float, str,
                                                                            str | None]]
                                                            ) -> None:
    """Every attempt fails; those not refused are checked. In any window, per address, at
    most max_failures were checked, and a refusal always names a time in the future."""
    throttle = AuthThrottle(RULE)
    checked: dict[str, list[float]] = {}
    for offset, address, user in sorted(raw, key=lambda item: item[0]):
        now = NOW + offset
        verdict = throttle.verdict(address, user, now)
        if verdict.refused:
            assert 0 < verdict.retry_after_s <= RULE.window_s
            continue
        _, delay = throttle.failed(address, user, now)
        assert 0 <= delay <= RULE.delay_max_s
        times = checked.setdefault(address, [])
        times.append(now)
        assert sum(1 for t in times if t > now - RULE.window_s) <= RULE.max_failures


@given(st.integers(min_value=0, max_value=50), st.integers(min_value=0, max_value=50))
def test_delays_grow_and_are_bounded(a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert failure_delay(RULE, low) <= failure_delay(RULE, high) <= RULE.delay_max_s
