"""The state tables: aggregation, transitions, receipt and command_status mappings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.errors import ERROR_TABLE, ErrorName
from bridge.core.states import (
    FINAL_MESSAGE_STATES,
    MESSAGE_TRANSITIONS,
    MessageState,
    PartState,
    Retry,
    aggregate,
    can_move,
    receipt_part_state,
    upstream_verdict,
)

P = PartState
M = MessageState


@pytest.mark.parametrize(("parts", "expected"), [
    ([P.DELIVERED], M.DELIVERED),
    ([P.QUEUED], M.QUEUED),
    ([P.SUBMITTED], M.SUBMITTED),
    ([P.FAILED], M.FAILED),
    ([P.UNDELIVERABLE], M.UNDELIVERABLE),
    ([P.EXPIRED], M.EXPIRED),
    ([P.CANCELLED], M.CANCELLED),
    ([P.CANCELLED, P.QUEUED], M.CANCELLED),
    ([P.DELIVERED, P.DELIVERED], M.DELIVERED),
    ([P.DELIVERED, P.SUBMITTED], M.SUBMITTED),
    ([P.DELIVERED, P.QUEUED], M.QUEUED),
    ([P.DELIVERED, P.UNDELIVERABLE], M.UNDELIVERABLE),
    ([P.EXPIRED, P.DELIVERED], M.EXPIRED),
    ([P.FAILED, P.UNDELIVERABLE], M.FAILED),
    ([], M.QUEUED),
])
def test_aggregate(parts: list[PartState], expected: MessageState) -> None:
    assert aggregate(parts) is expected


@given(st.lists(st.sampled_from(list(PartState)), min_size=1, max_size=12))
def test_delivered_only_when_every_part_is(parts: list[PartState]) -> None:
    assert (aggregate(parts) is M.DELIVERED) == all(p is P.DELIVERED for p in parts)


@pytest.mark.parametrize(("stat", "tlv", "expected"), [
    ("DELIVRD", None, P.DELIVERED), ("delivrd", None, P.DELIVERED), ("UNDELIV", None, P.UNDELIVERABLE),
    ("EXPIRED", None, P.EXPIRED), ("REJECTD", None, P.UNDELIVERABLE), ("DELETED", None, P.UNDELIVERABLE),
    ("ACCEPTD", None, None), ("ENROUTE", None, None), ("UNKNOWN", None, None), ("BOGUS", None, None),
    (None, 2, P.DELIVERED), ("UNDELIV", 2, P.DELIVERED), (None, 5, P.UNDELIVERABLE), (None, 1, None),
    (None, 3, P.EXPIRED), (None, 8, P.UNDELIVERABLE), (None, None, None),
])
def test_receipt_mapping(stat: str | None, tlv: int | None, expected: PartState | None) -> None:
    assert receipt_part_state(stat, tlv) is expected


@pytest.mark.parametrize(("status", "error", "retry"), [
    (0x58, ErrorName.INTERNAL_ERROR, Retry.BACKOFF), (0x14, ErrorName.INTERNAL_ERROR, Retry.BACKOFF),
    (0x0B, ErrorName.INVALID_DESTINATION, Retry.NO), (0x0A, ErrorName.INVALID_SOURCE, Retry.NO),
    (0x01, ErrorName.INVALID_MESSAGE, Retry.NO), (0x45, ErrorName.INTERNAL_ERROR, Retry.NO),
    (0x1234, ErrorName.INTERNAL_ERROR, Retry.NO),
])
def test_command_status_mapping(status: int, error: ErrorName, retry: Retry) -> None:
    verdict = upstream_verdict(status)
    assert (verdict.error, verdict.retry) == (error, retry)


def test_transition_table_is_closed_and_final_states_are_sticky() -> None:
    for state, targets in MESSAGE_TRANSITIONS.items():
        assert can_move(state, state)
        for target in targets:
            assert target in MessageState
    assert not MESSAGE_TRANSITIONS[M.DELIVERED]
    assert not can_move(M.DELIVERED, M.UNDELIVERABLE)
    assert not can_move(M.FAILED, M.QUEUED)
    assert all(not can_move(s, M.QUEUED) for s in FINAL_MESSAGE_STATES)


def test_error_table_matches_the_spec() -> None:
    expected = {
        "SUCCESS": (1701, None, 250), "INVALID_PARAMETER": (1702, False, 501),
        "AUTH_FAILED": (1703, False, 535), "INVALID_TYPE": (1704, False, 554),
        "INVALID_MESSAGE": (1705, False, 554), "INVALID_DESTINATION": (1706, False, 550),
        "INVALID_SOURCE": (1707, False, 553), "INVALID_DLR": (1708, False, 501),
        "VALIDATION_FAILED": (1709, True, 454), "INTERNAL_ERROR": (1710, True, 451),
        "INSUFFICIENT_CREDIT": (1025, False, 552), "OVER_LIMIT": (1711, True, 451),
        "DUPLICATE": (1712, False, 250), "FLOOD": (1713, True, 450),
        "TOO_MANY_RECIPIENTS": (1714, False, 452), "STORE_UNAVAILABLE": (1715, True, 452),
    }
    assert {n.value for n in ERROR_TABLE} == set(expected)
    for name, (code, retry, smtp) in expected.items():
        spec = ERROR_TABLE[ErrorName(name)]
        assert spec.code == code and spec.smtp.code == smtp
        if retry is not None:
            assert spec.retry is retry
            # A retryable error must be a temporary (4xx) SMTP reply and vice versa, except
            # 452 4.5.3, which RFC 5321 §4.5.3.1.10 uses for "send the rest separately".
            if name != "TOO_MANY_RECIPIENTS":
                assert (spec.smtp.code // 100 == 4) is retry
