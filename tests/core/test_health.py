"""The fault table and the circuit breaker (bridge.core.health): tables checked row by row,
the breaker's rule by properties over arbitrary outcome sequences."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.health import (
    CIRCUIT_MOVES,
    SUBMIT_FAULT,
    TIMEOUT_FAULT,
    Breaker,
    BreakerRule,
    Circuit,
    Fault,
    Move,
    admit,
    available,
    move,
    observe,
    submit_fault,
)
from bridge.core.states import COMMAND_STATUS, Retry, upstream_verdict

RULE = BreakerRule(failure_rate=0.5, min_submits=4, window_s=10.0, cooldown_s=5.0)


@pytest.mark.parametrize(("status", "fault"), [
    (0x00, Fault.NONE), (0x08, Fault.LINK), (0x45, Fault.LINK), (0xFF, Fault.LINK),
    (0x0B, Fault.MESSAGE), (0x0A, Fault.MESSAGE), (0x01, Fault.MESSAGE), (0x51, Fault.MESSAGE),
    (0x58, Fault.BUSY), (0x14, Fault.BUSY), (0x1234, Fault.MESSAGE),
])
def test_whose_fault_each_status_is(status: int, fault: Fault) -> None:
    assert submit_fault(status) is fault


def test_every_status_the_dispatcher_knows_has_a_fault() -> None:
    assert set(COMMAND_STATUS) <= set(SUBMIT_FAULT)
    assert TIMEOUT_FAULT is Fault.LINK


def test_busy_statuses_are_the_backoff_ones_and_0x14_is_0x58() -> None:
    """Throttling is no fault of the link's, and the dispatcher retries it: the two tables
    agree, and queue-full is handled exactly as throttled."""
    for status, fault in SUBMIT_FAULT.items():
        if fault is Fault.BUSY:
            assert upstream_verdict(status).retry is Retry.BACKOFF
    assert upstream_verdict(0x14) == upstream_verdict(0x58)
    assert submit_fault(0x14) is submit_fault(0x58)


def test_the_moves_table() -> None:
    assert dict(CIRCUIT_MOVES) == {
        (Circuit.CLOSED, Move.TRIP): Circuit.OPEN,
        (Circuit.OPEN, Move.COOLED): Circuit.HALF_OPEN,
        (Circuit.HALF_OPEN, Move.PROBE_OK): Circuit.CLOSED,
        (Circuit.HALF_OPEN, Move.PROBE_FAILED): Circuit.OPEN,
    }
    with pytest.raises(ValueError):
        move(Breaker(), Move.COOLED, 0.0)


def test_trips_at_the_rate_then_cools_then_one_probe_decides() -> None:
    b = Breaker()
    for i, fault in enumerate((Fault.NONE, Fault.LINK, Fault.NONE)):
        b = observe(b, RULE, fault, 100.0 + i)
    assert b.circuit is Circuit.CLOSED and b.counted == (3, 1)
    b = observe(b, RULE, Fault.LINK, 103.0)  # 2 of 4: the rate is reached
    assert b.circuit is Circuit.OPEN and b.since == 103.0
    assert admit(b, RULE, 107.9) == (False, b)  # cooling down
    ok, b = admit(b, RULE, 108.0)
    assert ok and b.circuit is Circuit.HALF_OPEN and b.probe_at == 108.0
    assert not admit(b, RULE, 109.0)[0]  # the probe is out: nobody else
    assert observe(b, RULE, Fault.LINK, 109.5).circuit is Circuit.OPEN
    closed = observe(b, RULE, Fault.MESSAGE, 109.5)  # the message's fault: the link works
    assert closed.circuit is Circuit.CLOSED and closed.counted == (0, 0)


def test_a_lost_probe_frees_its_slot_after_a_cooldown() -> None:
    _, b = admit(Breaker(Circuit.OPEN, 0.0), RULE, 5.0)
    assert b.circuit is Circuit.HALF_OPEN
    assert not available(b, RULE, 9.9)
    ok, again = admit(b, RULE, 10.0)
    assert ok and again.probe_at == 10.0


def test_busy_and_message_faults_never_trip_and_old_faults_leave_the_window() -> None:
    b = Breaker()
    for i in range(50):
        b = observe(b, RULE, (Fault.BUSY, Fault.MESSAGE)[i % 2], float(i))
    assert b.circuit is Circuit.CLOSED
    b = Breaker()
    for t in (0.0, 1.0, 2.0):
        b = observe(b, RULE, Fault.LINK, t)  # three faults, below min_submits
    b = observe(b, RULE, Fault.NONE, 30.0)  # they have left the 10 s window
    assert b.circuit is Circuit.CLOSED and b.counted == (1, 0)


def test_a_zero_rate_never_trips() -> None:
    rule = BreakerRule(failure_rate=0.0, min_submits=1)
    b = Breaker()
    for i in range(20):
        b = observe(b, rule, Fault.LINK, float(i))
    assert b.circuit is Circuit.CLOSED


def test_an_open_breaker_ignores_late_outcomes() -> None:
    b = Breaker(Circuit.OPEN, 10.0)
    assert observe(b, RULE, Fault.NONE, 11.0) == b


outcomes = st.lists(st.tuples(st.sampled_from(list(Fault)), st.floats(0, 3)), max_size=80)


@given(outcomes, st.lists(st.floats(0, 3), max_size=20))
def test_every_change_is_a_move_of_the_table(events: list[tuple[Fault, float]],
                                             asks: list[float]) -> None:
    """Whatever the outcomes and the asks, the circuit only ever changes along the table, a
    closed breaker always admits, and an open one admits nothing before its cool-down."""
    b, now = Breaker(), 0.0
    asked = iter(asks)
    for fault, dt in events:
        now += dt
        before = b
        ok, b = admit(b, RULE, now)
        if before.circuit is Circuit.CLOSED:
            assert ok
        if before.circuit is Circuit.OPEN and now - before.since < RULE.cooldown_s:
            assert not ok
        assert _allowed(before.circuit, b.circuit)
        before = b
        b = observe(b, RULE, fault, now + next(asked, 0.0))
        assert _allowed(before.circuit, b.circuit)


def _allowed(old: Circuit, new: Circuit) -> bool:
    return new is old or new in {t for (s, _), t in CIRCUIT_MOVES.items() if s is old}


@given(st.lists(st.booleans(), min_size=1, max_size=60))
def test_trips_exactly_when_the_window_reaches_the_rate(failures: list[bool]) -> None:
    """Outcomes all inside one window: the breaker is open right after the first outcome at
    which at least min_submits were counted with at least half of them link faults."""
    b = Breaker()
    expected_trip = None
    for i in range(len(failures)):
        seen = failures[:i + 1]
        if len(seen) >= RULE.min_submits and sum(seen) >= RULE.failure_rate * len(seen):
            expected_trip = i
            break
    for i, failed in enumerate(failures):
        b = observe(b, RULE, Fault.LINK if failed else Fault.NONE, 1.0 + i * 0.001)
        if i == expected_trip:
            assert b.circuit is Circuit.OPEN
            return
        assert b.circuit is Circuit.CLOSED
