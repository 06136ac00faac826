"""The operator's rules: which messages cancel and retry may touch, the renewed validity, and
the operator's input as the command line and the admin API read it."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from bridge.core.operator import (
    MAX_IDS,
    OPERATOR_MOVES,
    Action,
    action_refusal,
    parse_credit_change,
    parse_ids,
    parse_limit,
    parse_since,
    parse_state,
    renewed_expiry,
)
from bridge.core.policy import CREDIT_MAX, credit_after, quota_allows, quota_left
from bridge.core.states import MESSAGE_TRANSITIONS, MessageState, can_move

M = MessageState
NOW = 1_800_000_000.0


@pytest.mark.parametrize("state", list(MessageState))
def test_cancel_takes_only_queued_or_scheduled_messages_not_being_sent(state: M) -> None:
    allowed = state in (M.QUEUED, M.SCHEDULED)
    assert (action_refusal(Action.CANCEL, state, sending=False) is None) == allowed
    assert action_refusal(Action.CANCEL, state, sending=True) is not None


@pytest.mark.parametrize("state", list(MessageState))
def test_retry_takes_only_failed_or_expired_messages(state: M) -> None:
    allowed = state in (M.FAILED, M.EXPIRED)
    assert (action_refusal(Action.RETRY, state, sending=False) is None) == allowed


def test_refusals_say_why_in_words() -> None:
    assert action_refusal(Action.CANCEL, None, sending=False) == "no such message"
    assert action_refusal(Action.CANCEL, M.DELIVERED, sending=False) == (
        "it is delivered: only queued or scheduled messages can be cancelled")
    assert "too late" in (action_refusal(Action.CANCEL, M.QUEUED, sending=True) or "")


def test_no_automatic_transition_makes_an_operator_move() -> None:
    """Receipts and the dispatcher record through MESSAGE_TRANSITIONS: none of them can
    cancel a message or bring a failed one back."""
    for move in OPERATOR_MOVES.values():
        for source in move.sources:
            assert move.target not in MESSAGE_TRANSITIONS[source]
    assert all(not can_move(M.CANCELLED, s) for s in MessageState if s is not M.CANCELLED)


def test_a_retry_is_valid_as_long_as_the_message_was_at_first() -> None:
    assert renewed_expiry(created_at=100, send_at=None, expires_at=3700, now=NOW) == NOW + 3600
    assert renewed_expiry(created_at=100, send_at=1000, expires_at=4600, now=NOW) == NOW + 3600
    assert renewed_expiry(created_at=100, send_at=None, expires_at=90, now=NOW) == NOW + 60


def test_ids_are_checked_and_deduplicated() -> None:
    assert parse_ids(["a1", "b-2_c", "a1"]) == ("a1", "b-2_c")
    for bad in ([], ["x y"], ["' OR 1=1 --"], [""], ["a" * 65], [7], ["ok", None]):
        with pytest.raises(ValueError):
            parse_ids(bad)
    with pytest.raises(ValueError, match="at most"):
        parse_ids([f"m{i}" for i in range(MAX_IDS + 1)])


def test_states_and_times_and_limits() -> None:
    assert parse_state("Cancelled") is M.CANCELLED and parse_state("") is None
    with pytest.raises(ValueError, match="unknown state 'lost': one of scheduled"):
        parse_state("lost")
    assert parse_since("15m", now=NOW) == NOW - 900
    assert parse_since("2h", now=NOW) == NOW - 7200
    assert parse_since("2027-01-15T08:00:00Z", now=NOW) == datetime(
        2027, 1, 15, 8, tzinfo=timezone.utc).timestamp()
    assert parse_since("2027-01-15T09:00:00+01:00", now=NOW) == parse_since(
        "2027-01-15T08:00:00Z", now=NOW)
    assert parse_since("2027-01-15T08:00:00", now=NOW) == parse_since("2027-01-15T08:00:00Z",
                                                                      now=NOW)
    for bad in ("yesterday", "15 fortnights", "2027-13-01"):
        with pytest.raises(ValueError, match="not a time"):
            parse_since(bad, now=NOW)
    assert parse_limit(None, default=20) == 20 and parse_limit("5", default=20) == 5
    for bad in ("0", "-1", "1001", "ten", True):
        with pytest.raises(ValueError, match="limit"):
            parse_limit(bad, default=20)


def test_credit_changes_are_signed_and_never_zero() -> None:
    assert parse_credit_change("+500") == 500 and parse_credit_change("-20") == -20
    assert parse_credit_change(7) == 7
    for bad in ("500", "+0", "+1.5", "+", "++3", "+99999999999999", True, None, "+1e3"):
        with pytest.raises(ValueError):
            parse_credit_change(bad)


def test_credit_counts_beside_the_quota() -> None:
    assert quota_allows(10, 10, 1) is False and quota_allows(10, 10, 1, credit=1) is True
    assert quota_allows(10**9, 0, 5, credit=-3) is True  # unlimited stays unlimited
    assert quota_left(7, 10, credit=5) == 8 and quota_left(7, 0, credit=5) is None
    assert credit_after(10, 0, 5) == 5 and credit_after(10, 5, -15) == -10
    with pytest.raises(ValueError, match="unlimited"):
        credit_after(0, 0, 5)
    with pytest.raises(ValueError, match="at most -15"):
        credit_after(10, 5, -16)
    with pytest.raises(ValueError, match="exceed"):
        credit_after(10, CREDIT_MAX, 1)
