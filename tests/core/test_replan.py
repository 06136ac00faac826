"""A message sent again whole (new concatenation reference) or planned for another route
(bridge.core.segmentation: with_reference, plan_for_route, concat_of) and the stored forms
they read back (bridge.core.encoding: encoding_of, class_of)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.encoding import Encoding, class_of, data_coding_for, encoding_of
from bridge.core.errors import BridgeError
from bridge.core.segmentation import (
    ConcatMode,
    RouteForm,
    SegmentPlan,
    concat_of,
    decode_tlvs,
    encode_tlvs,
    is_wap_push,
    plan_fits,
    plan_for_route,
    plan_message,
    plan_wap_push,
    reference_max,
    reference_of,
    with_reference,
)
from tests.core.test_segmentation import TEXTS

G, L, U, B = Encoding.GSM7, Encoding.LATIN1, Encoding.UCS2, Encoding.BINARY
ALL = (G, L, U)
CUT = (ConcatMode.UDH8, ConcatMode.UDH16, ConcatMode.SAR)


def stored(plan: SegmentPlan) -> list[tuple[bytes, tuple[tuple[str, int | bytes], ...]]]:
    """The parts as the store keeps them (short_message and the TLVs, through their JSON)."""
    return [(seg.short_message, decode_tlvs(encode_tlvs(plan.tlvs(seg))))
            for seg in plan.segments]


@settings(max_examples=400, deadline=None)
@given(text=TEXTS, mode=st.sampled_from(CUT), data=st.data())
def test_a_new_reference_changes_only_the_reference(text: str, mode: ConcatMode,
                                                    data: st.DataObject) -> None:
    """Rewriting the stored parts of a plan with another reference gives exactly the parts
    that planning the same text with that reference gives: same text, same cuts, same
    everything else."""
    top = reference_max(mode)
    first, second = data.draw(st.integers(0, top)), data.draw(st.integers(0, top))
    try:
        plan = plan_message(text, concat=mode, reference=first, max_parts=255)
    except BridgeError:
        return
    again = plan_message(text, concat=mode, reference=second, max_parts=255)
    rewritten = [with_reference(sm, plan.esm_class, tlvs, second) for sm, tlvs in stored(plan)]
    assert rewritten == stored(again)
    for sm, tlvs in stored(plan):
        assert concat_of(sm, plan.esm_class, tlvs) is (mode if plan.parts > 1 else None)
        assert reference_of(sm, plan.esm_class, tlvs) == (first if plan.parts > 1 else None)


@given(st.sampled_from(CUT), st.integers(0, 255), st.integers(0, 255))
def test_a_wap_push_keeps_its_ports_with_a_new_reference(mode: ConcatMode, first: int,
                                                         second: int) -> None:
    url = "http://example.com/" + "x" * 300
    plan = plan_wap_push("Read this", url, concat=mode, reference=first)
    again = plan_wap_push("Read this", url, concat=mode, reference=second)
    assert plan.parts > 1
    assert [with_reference(sm, plan.esm_class, t, second) for sm, t in stored(plan)] \
        == stored(again)
    assert all(is_wap_push(sm, plan.esm_class) for sm, _ in stored(plan))
    text = plan_message("hello " * 40, reference=first)
    assert not any(is_wap_push(sm, text.esm_class) for sm, _ in stored(text))


def test_payload_and_lone_parts() -> None:
    payload = plan_message("x" * 400, concat=ConcatMode.PAYLOAD)
    [(sm, tlvs)] = stored(payload)
    assert concat_of(sm, payload.esm_class, tlvs) is ConcatMode.PAYLOAD
    assert with_reference(sm, payload.esm_class, tlvs, 9) == (sm, tlvs)
    lone = plan_message("short")
    [(sm, tlvs)] = stored(lone)
    assert concat_of(sm, lone.esm_class, tlvs) is None
    assert with_reference(sm, lone.esm_class, tlvs, 9) == (sm, tlvs)


@pytest.mark.parametrize(("stored_form", "encoding", "route", "fits"), [
    (ConcatMode.UDH8, G, RouteForm(ConcatMode.UDH8), True),
    (ConcatMode.UDH8, G, RouteForm(ConcatMode.SAR), False),
    (None, G, RouteForm(ConcatMode.SAR), True),  # a lone part goes anywhere
    (None, L, RouteForm(ConcatMode.UDH8, (G, U)), False),  # ... in an encoding it takes
    (ConcatMode.UDH16, B, RouteForm(ConcatMode.UDH16, (G,)), True),  # 8-bit data: any
    (ConcatMode.PAYLOAD, U, RouteForm(ConcatMode.UDH8), False),
])
def test_plan_fits(stored_form: ConcatMode | None, encoding: Encoding, route: RouteForm,
                   fits: bool) -> None:
    assert plan_fits(stored_form, encoding, route) is fits


def test_plan_for_route_uses_the_form_and_an_encoding_the_smsc_takes() -> None:
    latin = "Ça coûte 5 € à Zürich. " * 8  # Latin-1 is the cheapest exact encoding
    assert plan_for_route(latin.replace("€", "E"), RouteForm(), auto=ALL).encoding is L
    no_latin = RouteForm(ConcatMode.SAR, (G, U))
    plan = plan_for_route(latin.replace("€", "E"), no_latin, auto=ALL, reference=300)
    assert plan.encoding is U and plan.concat is ConcatMode.SAR and plan.reference == 300 % 256
    fixed = plan_for_route("hello", no_latin, auto=ALL, type_code=7)  # Latin-1 flash asked
    assert fixed.encoding is G and fixed.flash  # GSM is cheapest of what it takes; still flash
    kept = plan_for_route("hello", RouteForm(), auto=ALL, type_code=5)
    assert kept.encoding is L
    with pytest.raises(BridgeError):
        plan_for_route("Жук", RouteForm(encodings=(G, L)), auto=ALL)


@pytest.mark.parametrize("encoding", [G, L, U, B])
@pytest.mark.parametrize("message_class", [None, 0, 1, 2, 3])
def test_encoding_and_class_read_back_from_data_coding(encoding: Encoding,
                                                       message_class: int | None) -> None:
    dcs = data_coding_for(encoding, False, message_class)
    assert encoding_of(dcs) is encoding
    assert class_of(dcs) == (None if encoding is L else message_class)


def test_tlvs_round_trip_through_their_stored_form() -> None:
    tlvs = (("sar_msg_ref_num", 7), ("message_payload", b"\x00\xff"), ("dest_addr_subunit", 1))
    assert decode_tlvs(encode_tlvs(tlvs)) == tlvs
    assert encode_tlvs(()) == "[]" and decode_tlvs("[]") == ()
