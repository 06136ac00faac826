"""WAP Push Service Indication (bridge.core.wap) against byte strings from the specifications:
the tokenised SI of WAP-167-ServiceInd's own example, the WSP Push PDU of WAP-230, and the
WDP port element of TS 23.040 §9.2.3.24.4 in each part's UDH."""

from __future__ import annotations

import pytest

from bridge.core.encoding import Encoding
from bridge.core.errors import BridgeError, ErrorName
from bridge.core.segmentation import ConcatMode, plan_message, plan_wap_push
from bridge.core.wap import push_pdu, service_indication, si_document, uintvar


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


#: WAP-167-ServiceInd-20010731-a, the example of its tokenised form: href
#: "http://www.xyz.com/email/123/abc.wml", created 1999-06-25T15:23:15Z, si-expires
#: 1999-06-30T00:00:00Z, text "You have 4 new emails".
SPEC_EXAMPLE = _hex(
    "02 05 6A 00 45 C6 0D 03 78797A 00 85 03 656D61696C2F3132332F6162632E776D6C 00"
    "0A C3 07 19 99 06 25 15 23 15 10 C3 04 19 99 06 30 01"
    "03 596F7520686176652034206E657720656D61696C73 00 01 01")


def test_the_specification_example() -> None:
    assert si_document("http://www.xyz.com/email/123/abc.wml", "You have 4 new emails",
                       created="1999-06-25T15:23:15Z",
                       expires="1999-06-30T00:00:00Z") == SPEC_EXAMPLE


@pytest.mark.parametrize(("href", "attribute"), [
    ("https://www.acme.net/a", "0F 03 61636D65 00 87 03 61 00"),
    ("https://acme.org/", "0E 03 61636D65 00 88"),
    ("http://acme.edu/x", "0C 03 61636D65 00 86 03 78 00"),
    ("wtai://wp/mc;123", "0B 03 777461693A2F2F77702F6D633B313233 00"),
])
def test_href_start_and_value_tokens(href: str, attribute: str) -> None:
    """Table-driven: the longest of the four start tokens, else 0x0B and the whole URL; each
    .com/ .edu/ .net/ .org/ as its own token."""
    assert si_document(href, "") == _hex("02 05 6A 00 45 86") + _hex(attribute) + _hex("01 01")


def test_action_and_si_id_and_utf8_text() -> None:
    doc = si_document("http://a.com/", "é", action="signal-high", si_id="7")
    assert doc == _hex("02 05 6A 00 45 C6 0C 03 61 00 85 08 11 03 37 00 01 03 C3A9 00 01 01")


def test_the_push_pdu_and_uintvar() -> None:
    assert uintvar(0) == b"\x00" and uintvar(127) == b"\x7f"
    assert uintvar(128) == b"\x81\x00" and uintvar(0x3FFF) == b"\xff\x7f"
    # TID, Push (0x06), headers length 1, application/vnd.wap.sic (0x2E | 0x80)
    assert push_pdu(b"SI") == _hex("01 06 01 AE") + b"SI"
    assert service_indication("http://a.com/", "hi") == push_pdu(si_document("http://a.com/",
                                                                             "hi"))


def test_refusals() -> None:
    with pytest.raises(BridgeError) as caught:
        si_document("http://a/\x00", "x")
    assert caught.value.name is ErrorName.INVALID_MESSAGE
    with pytest.raises(BridgeError) as caught:
        si_document("http://a/", "x", created="yesterday")
    assert caught.value.name is ErrorName.INVALID_PARAMETER
    with pytest.raises(BridgeError) as caught:
        plan_message("x", type_code=4, url="")
    assert caught.value.name is ErrorName.INVALID_PARAMETER


PORTS = "05 04 0B 84 23 F0"  # destination 2948 (WAP Push), source 9200


def test_one_sms_carries_the_ports_in_its_udh() -> None:
    plan = plan_message("Read me", type_code=4, url="http://example.com/n")
    [seg] = plan.segments
    assert (plan.encoding, plan.data_coding, plan.esm_class) == (Encoding.BINARY, 0x04, 0x40)
    assert seg.udh == _hex("06" + PORTS)
    assert seg.payload == service_indication("http://example.com/n", "Read me")
    assert seg.short_message == seg.udh + seg.payload
    assert plan.tlvs(seg) == ()


@pytest.mark.parametrize(("concat", "udh_tail", "per_part"), [
    (ConcatMode.UDH8, "00 03 2A {total:02X} {seq:02X}", 128),
    (ConcatMode.UDH16, "08 04 00 2A {total:02X} {seq:02X}", 127),
])
def test_a_long_push_is_concatenated_beside_the_ports(concat: ConcatMode, udh_tail: str,
                                                      per_part: int) -> None:
    url = "http://example.com/" + "x" * 300
    plan = plan_wap_push("Long", url, concat=concat, reference=42)
    pdu = service_indication(url, "Long")
    total = -(-len(pdu) // per_part)
    assert plan.parts == total == 3
    for seg in plan.segments:
        tail = _hex(udh_tail.format(total=total, seq=seg.seq))
        assert seg.udh == bytes((6 + len(tail),)) + _hex(PORTS) + tail
        assert len(seg.short_message) <= 140
    assert b"".join(seg.payload for seg in plan.segments) == pdu


def test_sar_mode_keeps_the_ports_and_leaves_concatenation_to_the_tlvs() -> None:
    plan = plan_wap_push("Long", "http://example.com/" + "x" * 300, concat=ConcatMode.SAR,
                         reference=7)
    assert all(seg.udh == _hex("06" + PORTS) for seg in plan.segments)
    assert plan.tlvs(plan.segments[1]) == (("sar_msg_ref_num", 7), ("sar_total_segments", 3),
                                           ("sar_segment_seqnum", 2))


def test_too_many_parts() -> None:
    with pytest.raises(BridgeError) as caught:
        plan_wap_push("x", "http://e.com/" + "y" * 2000, max_parts=3)
    assert caught.value.too_big and caught.value.name is ErrorName.INVALID_MESSAGE
