"""MO reassembly: UDH parsing, and the pure rules the stores put parts together by."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.reassembly import GAP_MARKER, assemble, concat_info, join_partial, split_udh


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


def test_parts_come_together_once_all_are_there() -> None:
    assert assemble(3, {3: "C", 1: "A"}) is None
    assert assemble(3, {3: "C", 1: "A", 2: "B"}) == "ABC"
    assert assemble(1, {1: "solo"}) == "solo"
    assert assemble(2, {1: "A", 3: "stray"}) is None


def test_partial_text_marks_each_gap_once() -> None:
    assert join_partial(3, {1: "A", 3: "C"}) == "A" + GAP_MARKER + "C"
    assert join_partial(4, {1: "A", 4: "D"}) == "A" + GAP_MARKER + "D"  # two missing: one mark
    assert join_partial(2, {1: "x"}) == "x" + GAP_MARKER.rstrip()
    assert join_partial(2, {}) == "[…]"


@given(st.lists(st.text(max_size=5), min_size=1, max_size=10), st.randoms())
def test_any_arrival_order_reassembles(parts: list[str], rnd: object) -> None:
    import random
    assert isinstance(rnd, random.Random)
    order = list(range(1, len(parts) + 1))
    rnd.shuffle(order)
    texts: dict[int, str] = {}
    for i, seq in enumerate(order):
        texts[seq] = parts[seq - 1]
        result = assemble(len(parts), texts)
        assert (result is None) == (i < len(order) - 1)
    assert assemble(len(parts), texts) == "".join(parts)
