"""MO reassembly: UDH parsing and the pure add/expire state machine."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.reassembly import (
    EMPTY, GAP_MARKER, MoFragment, Pending, add, concat_info, evict_oldest, expire, join_partial,
    split_udh,
)


def frag(seq: int, text: str, *, total: int = 3, ref: int | None = 7, at: float = 0.0,
         source: str = "447400123456") -> MoFragment:
    return MoFragment(source=source, destination="ACME", ref=ref, total=total, seq=seq,
                      text=text, received_at=at)


def test_split_udh_and_8bit_ref() -> None:
    sm = bytes([5, 0, 3, 0x42, 3, 2]) + b"hello"
    udh, body = split_udh(sm)
    assert udh == bytes([5, 0, 3, 0x42, 3, 2]) and body == b"hello"
    assert concat_info(udh) == (0x42, 3, 2)


def test_16bit_ref_and_other_ies_skipped() -> None:
    # port addressing IE (0x05, 4 octets) before a 16-bit concatenation IE
    udh = bytes([12, 0x05, 4, 0x0B, 0x84, 0x23, 0xF0, 0x08, 4, 0x12, 0x34, 2, 1])
    assert concat_info(udh) == (0x1234, 2, 1)
    assert split_udh(udh + b"x") == (udh, b"x")


@pytest.mark.parametrize("sm", [b"", bytes([0]) + b"abc", bytes([9, 0, 3, 1])])
def test_split_udh_malformed(sm: bytes) -> None:
    assert split_udh(sm) == (b"", sm)


@pytest.mark.parametrize("udh", [b"", bytes([2, 0x00, 3]), bytes([5, 0x00, 2, 1, 2, 3]),
                                 bytes([4, 0x05, 2, 1, 2])])
def test_concat_info_absent_or_truncated(udh: bytes) -> None:
    assert concat_info(udh) is None


def test_parts_in_any_order_complete_once() -> None:
    pending: Pending = EMPTY
    pending, text = add(pending, frag(3, "C"), 0)
    assert text is None
    pending, text = add(pending, frag(1, "A"), 0)
    assert text is None
    pending, text = add(pending, frag(1, "A"), 0)  # redelivered duplicate
    assert text is None and len(pending) == 1
    pending, text = add(pending, frag(2, "B"), 0)
    assert text == "ABC" and pending == {}


def test_senders_with_same_ref_do_not_mix() -> None:
    pending: Pending = EMPTY
    pending, _ = add(pending, frag(1, "a", total=2, source="1"), 0)
    pending, _ = add(pending, frag(1, "x", total=2, source="2"), 0)
    pending, text = add(pending, frag(2, "b", total=2, source="1"), 0)
    assert text == "ab" and len(pending) == 1


def test_single_and_impossible_numbering_are_standalone() -> None:
    assert add(EMPTY, frag(1, "solo", total=1, ref=None), 0) == (EMPTY, "solo")
    assert add(EMPTY, frag(0, "zero", total=2), 0)[1] == "zero"
    assert add(EMPTY, frag(5, "over", total=2), 0)[1] == "over"


def test_add_does_not_mutate_input() -> None:
    pending, _ = add(EMPTY, frag(1, "A"), 0)
    before = dict(pending)
    add(pending, frag(2, "B"), 0)
    assert dict(pending) == before


def test_expire_and_partial_text() -> None:
    pending, _ = add(EMPTY, frag(1, "A", at=10.0), 10.0)
    pending, _ = add(pending, frag(3, "C", at=50.0), 50.0)
    pending, _ = add(pending, frag(1, "x", total=2, ref=8, at=40.0), 40.0)
    kept, stale = expire(pending, 60.0, 30.0)
    assert [f.text for f in stale[0]] == ["A", "C"] and len(kept) == 1
    assert join_partial(stale[0]) == "A" + GAP_MARKER + "C"
    assert expire(kept, 60.0, 30.0) == (kept, ())
    kept2, stale2 = expire(kept, 71.0, 30.0)
    assert kept2 == {} and join_partial(stale2[0]) == "x" + GAP_MARKER.rstrip()


def test_evict_oldest() -> None:
    pending: Pending = EMPTY
    for ref in range(5):
        pending, _ = add(pending, frag(1, str(ref), ref=ref, at=float(ref)), 0)
    kept, evicted = evict_oldest(pending, 3)
    assert len(kept) == 3 and [s[0].ref for s in evicted] == [0, 1]
    assert evict_oldest(kept, 3) == (kept, ())


@given(st.lists(st.text(max_size=5), min_size=1, max_size=10), st.randoms())
def test_any_arrival_order_reassembles(parts: list[str], rnd: object) -> None:
    import random
    assert isinstance(rnd, random.Random)
    order = list(range(1, len(parts) + 1))
    rnd.shuffle(order)
    pending: Pending = EMPTY
    result = None
    for i, seq in enumerate(order):
        pending, result = add(pending, frag(seq, parts[seq - 1], total=len(parts)), 0)
        if i < len(order) - 1:
            assert result is None or len(parts) == 1
    assert result == "".join(parts)
    assert pending == {}
