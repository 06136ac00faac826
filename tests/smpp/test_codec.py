"""The codec wrapper: byte-identical to smpplib's public path, tolerant deliver_sm parsing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smpplib import smpp as smpplib_smpp

from bridge.core.model import Address
from bridge.outbound.smpp import codec
from bridge.outbound.smpp.codec import SubmitSm

ALNUM = Address("ACME", 5, 0)
MSISDN = Address("447400123456", 1, 1)


def submit(**kw: object) -> SubmitSm:
    base: dict[str, object] = dict(source=ALNUM, destination=MSISDN, short_message=b"hello",
                                   data_coding=0, esm_class=0)
    base.update(kw)
    return SubmitSm(**base)  # type: ignore[arg-type]


def test_submit_sm_fields_and_sequence() -> None:
    raw = codec.encode_submit(123456, submit(validity_period="000001000000R",
                                             registered_delivery=1))
    length, command_id, status, seq = codec.header(raw)
    assert (length, command_id, status, seq) == (len(raw), codec.SUBMIT_SM, 0, 123456)
    pdu = codec.decode(raw)
    assert pdu.sequence == 123456
    assert pdu.source_addr == b"ACME" and pdu.source_addr_ton == 5 and pdu.source_addr_npi == 0
    assert pdu.destination_addr == b"447400123456" and pdu.dest_addr_ton == 1
    assert pdu.short_message == b"hello" and pdu.sm_length == 5
    assert pdu.validity_period == b"000001000000R" and pdu.registered_delivery == 1


def test_sar_tlvs_and_payload() -> None:
    raw = codec.encode_submit(1, submit(tlvs=(("sar_segment_seqnum", 2), ("sar_msg_ref_num", 513),
                                              ("sar_total_segments", 3))))
    pdu = codec.decode(raw)
    assert (pdu.sar_msg_ref_num, pdu.sar_total_segments, pdu.sar_segment_seqnum) == (513, 3, 2)
    long = bytes(range(256)) * 2
    raw = codec.encode_submit(2, submit(short_message=b"", tlvs=(("message_payload", long),)))
    pdu = codec.decode(raw)
    assert pdu.message_payload == long and pdu.sm_length == 0


tlv_values = st.fixed_dictionaries({}, optional={
    "sar_msg_ref_num": st.integers(0, 0xFFFF), "sar_total_segments": st.integers(1, 255),
    "sar_segment_seqnum": st.integers(1, 255), "dest_addr_subunit": st.integers(0, 255),
    "user_message_reference": st.integers(0, 0xFFFF),
})


@settings(max_examples=150, deadline=None)
@given(seq=st.integers(1, codec.MAX_SEQUENCE),
       src=st.text("ABCXYZ0123456789", min_size=1, max_size=11),
       dst=st.text("0123456789", min_size=1, max_size=20),
       ton=st.integers(0, 6), npi=st.integers(0, 18),
       sm=st.binary(max_size=254), dc=st.sampled_from([0, 1, 3, 4, 8, 0x10, 0x18, 0xF0]),
       esm=st.sampled_from([0, 0x40, 0x03]), rd=st.integers(0, 1),
       vp=st.sampled_from(["", "000001000000R", "240101120000000+"]),
       tlvs=tlv_values.flatmap(lambda d: st.permutations(list(d.items()))),
       payload=st.one_of(st.none(), st.binary(max_size=600)))
def test_fast_path_is_byte_identical_to_make_pdu(seq: int, src: str, dst: str, ton: int,
                                                 npi: int, sm: bytes, dc: int, esm: int, rd: int,
                                                 vp: str, tlvs: list[tuple[str, int]],
                                                 payload: bytes | None) -> None:
    options: list[tuple[str, int | bytes]] = list(tlvs)
    if payload is not None:  # message_payload instead of short_message (an empty one is left out)
        sm = b""
        options.append(("message_payload", payload))
    message = SubmitSm(source=Address(src, ton, npi), destination=Address(dst, 1, 1),
                       short_message=sm, data_coding=dc, esm_class=esm, registered_delivery=rd,
                       validity_period=vp, tlvs=tuple(options))
    fast = codec.encode_submit(seq, message)
    assert fast == codec.encode_submit_reference(seq, message)
    assert codec.header(fast)[3] == seq


@pytest.mark.parametrize(("kw", "match"), [
    ({"short_message": b"x" * 255}, "254"),
    ({"destination": Address("1" * 21, 1, 1)}, "destination"),
    ({"tlvs": (("no_such_tlv", 1),)}, "unknown"),
    ({"tlvs": (("sar_total_segments", 256),)}, "integer"),
    ({"tlvs": (("message_payload", 5),)}, "bytes"),
    ({"tlvs": (("message_payload", b"abc"),)}, "combined"),
    ({"tlvs": (("sar_msg_ref_num", 1), ("sar_msg_ref_num", 2))}, "twice"),
    ({"tlvs": (("source_subaddress", b"x"),)}, "not supported"),
])
def test_submit_rejects_what_smpplib_would_mangle(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        codec.encode_submit(1, submit(**kw))


def test_header_only_pdus_match_smpplib() -> None:
    for name, command_id in (("enquire_link", codec.ENQUIRE_LINK),
                             ("enquire_link_resp", codec.ENQUIRE_LINK_RESP),
                             ("unbind", codec.UNBIND), ("unbind_resp", codec.UNBIND_RESP),
                             ("generic_nack", codec.GENERIC_NACK)):
        pdu = smpplib_smpp.make_pdu(name, client=codec._STUB)
        pdu.sequence = 99
        assert codec.encode_header_only(command_id, 99) == pdu.generate()
    resp = smpplib_smpp.make_pdu("deliver_sm_resp", client=codec._STUB, status=0x64)
    resp.sequence = 7
    assert codec.encode_deliver_sm_resp(7, 0x64) == resp.generate()


def test_bind_encode_and_resp_decode() -> None:
    raw = codec.encode_bind("bind_transceiver", 1, system_id="bridge", password="secret",
                            system_type="SMS")
    pdu = codec.decode(raw)
    assert codec.header(raw)[1] == codec.BIND_TRANSCEIVER
    assert (pdu.system_id, pdu.password, pdu.system_type, pdu.interface_version) == \
        (b"bridge", b"secret", b"SMS", 0x34)
    resp = smpplib_smpp.make_pdu("bind_transceiver_resp", client=codec._STUB, system_id="SMSC")
    resp.sequence = 1
    assert codec.decode_bind_resp(resp.generate()) == (0, "SMSC")
    refused = codec.encode_header_only(codec.BIND_TRANSCEIVER_RESP, 1, 0x0E)
    assert codec.decode_bind_resp(refused) == (0x0E, "")
    with pytest.raises(ValueError):
        codec.encode_bind("bind_nothing", 1, system_id="a", password="b")


def test_submit_resp_decode() -> None:
    resp = smpplib_smpp.make_pdu("submit_sm_resp", client=codec._STUB, message_id="1a2B")
    resp.sequence = 5
    assert codec.decode_submit_resp(resp.generate()) == (0, "1a2B")
    assert codec.decode_submit_resp(
        codec.encode_header_only(codec.SUBMIT_SM_RESP, 5, 0x58)) == (0x58, None)
    with pytest.raises(codec.CodecError):
        codec.decode_submit_resp(codec.encode_header_only(codec.ENQUIRE_LINK_RESP, 5))



@given(message_id=st.text(alphabet="0123456789abcdefABCDEF", max_size=64),
       status=st.sampled_from([0, 0x14, 0x58]))
def test_submit_resp_decoder_agrees_with_smpplib(message_id: str, status: int) -> None:
    resp = smpplib_smpp.make_pdu("submit_sm_resp", client=codec._STUB, message_id=message_id)
    resp.sequence, resp.status = 9, status
    raw = bytes(resp.generate())
    theirs = smpplib_smpp.parse_pdu(raw, client=codec._STUB, allow_unknown_opt_params=True)
    assert codec.decode_submit_resp(raw) == (theirs.status,
                                             (theirs.message_id or b"").decode() or None)


def test_submit_resp_without_final_nul_or_too_long() -> None:
    body = b"abc"
    raw = struct.pack(">LLLL", 16 + len(body), codec.SUBMIT_SM_RESP, 0, 1) + body
    assert codec.decode_submit_resp(raw) == (0, "abc")
    body = b"x" * 70 + b"\x00"
    with pytest.raises(codec.CodecError, match="longer"):
        codec.decode_submit_resp(struct.pack(">LLLL", 16 + len(body), codec.SUBMIT_SM_RESP, 0,
                                             1) + body)


def test_deliver_sm_receipt_with_tlvs() -> None:
    raw = codec.encode_deliver(
        9, source=MSISDN, destination=ALNUM, esm_class=0x04, data_coding=0,
        short_message=b"id:123 stat:DELIVRD",
        tlvs=(("receipted_message_id", "7b"), ("message_state", 2)))
    d = codec.decode_deliver(raw)
    assert d.sequence == 9 and d.source == MSISDN and d.destination == ALNUM
    assert d.esm_class == 4 and d.short_message == b"id:123 stat:DELIVRD"
    assert d.receipted_message_id == "7b" and d.message_state == 2
    assert d.payload == d.short_message


def _append_tlv(raw: bytes, code: int, value: bytes) -> bytes:
    body = raw[16:] + struct.pack(">HH", code, len(value)) + value
    return struct.pack(">LLLL", 16 + len(body), *struct.unpack(">LLL", raw[4:16])) + body


def test_deliver_sm_tolerates_odd_tlvs() -> None:
    raw = codec.encode_deliver(3, source=MSISDN, destination=ALNUM, esm_class=0, data_coding=0,
                               short_message=b"hi")
    raw = _append_tlv(raw, 0x1401, b"vendor")             # unknown vendor TLV
    raw = _append_tlv(raw, 0x000D, b"\x01")               # source_addr_subunit: unknown to DeliverSM
    raw = _append_tlv(raw, 0x020C, b"\x07")               # sar_msg_ref_num with 1 octet
    raw = _append_tlv(raw, 0x0424, b"payload")            # message_payload
    d = codec.decode_deliver(raw)
    assert d.unknown_tlvs == {0x1401: b"vendor"}
    assert d.tlvs["source_addr_subunit"] == b"\x01"
    assert d.tlv_int("sar_msg_ref_num") == 7
    assert d.payload == b"payload"


def test_deliver_sm_malformed() -> None:
    raw = codec.encode_deliver(3, source=MSISDN, destination=ALNUM, esm_class=0, data_coding=0,
                               short_message=b"hi")
    with pytest.raises(codec.CodecError, match="command_length"):
        codec.decode_deliver(raw[:-3])
    with pytest.raises(codec.CodecError, match="not a deliver_sm"):
        codec.decode_deliver(raw[:4] + b"\x80\x00\x00\x04" + raw[8:])
    with pytest.raises(codec.CodecError):
        codec.decode_deliver(raw[:10])


def test_truncated_tlv_is_a_codec_error() -> None:
    raw = codec.encode_deliver(3, source=MSISDN, destination=ALNUM, esm_class=0, data_coding=0,
                               short_message=b"hi")
    body = raw[16:] + struct.pack(">HH", 0x0424, 10) + b"abc"
    bad = struct.pack(">LLLL", 16 + len(body), codec.DELIVER_SM, 0, 3) + body
    with pytest.raises(codec.CodecError, match="truncated"):
        codec.decode_deliver(bad)


def test_decode_unknown_command_is_codec_error() -> None:
    with pytest.raises(codec.CodecError):
        codec.decode(struct.pack(">LLLL", 16, 0x00000777, 0, 1))


def test_status_names() -> None:
    assert codec.command_status_name(0x58) == "ESME_RTHROTTLED"
    assert codec.command_status_name(0x0E) == "ESME_RINVPASWD"
    assert codec.command_status_name(0) == "ESME_ROK"
    assert codec.command_status_name(0x400) == "0x00000400"


_digits = st.text(alphabet="0123456789", max_size=20)


@settings(max_examples=200, deadline=None)
@given(source=_digits, destination=_digits, ton=st.integers(0, 6), npi=st.integers(0, 18),
       esm_class=st.integers(0, 255), data_coding=st.sampled_from([0, 3, 4, 8, 0xF0]),
       short_message=st.binary(max_size=254), sequence=st.integers(1, 0x7FFFFFFF),
       receipted=st.none() | st.text(alphabet="0123456789abcdef", min_size=1, max_size=64),
       state=st.none() | st.integers(0, 8))
def test_deliver_sm_decoder_agrees_with_smpplib(source: str, destination: str, ton: int,
                                                 npi: int, esm_class: int, data_coding: int,
                                                 short_message: bytes, sequence: int,
                                                 receipted: str | None,
                                                 state: int | None) -> None:
    """The direct decoder reads what smpplib's own parser reads, field for field."""
    tlvs: list[tuple[str, int | bytes | str]] = []
    if receipted is not None:
        tlvs.append(("receipted_message_id", receipted))
    if state is not None:
        tlvs.append(("message_state", state))
    raw = codec.encode_deliver(sequence, source=Address(source, ton, npi),
                               destination=Address(destination, npi % 7, ton),
                               esm_class=esm_class, data_coding=data_coding,
                               short_message=short_message, tlvs=tuple(tlvs))
    ours = codec.decode_deliver(raw)
    theirs = smpplib_smpp.parse_pdu(raw, client=codec._STUB, allow_unknown_opt_params=True)
    assert ours.sequence == theirs.sequence == sequence
    assert ours.source == Address((theirs.source_addr or b"").decode(), theirs.source_addr_ton,
                                  theirs.source_addr_npi)
    assert ours.destination == Address((theirs.destination_addr or b"").decode(),
                                       theirs.dest_addr_ton, theirs.dest_addr_npi)
    assert (ours.esm_class, ours.data_coding) == (theirs.esm_class, theirs.data_coding)
    assert ours.protocol_id == (theirs.protocol_id or 0)
    assert ours.short_message == (theirs.short_message or b"")
    their_receipted = theirs.receipted_message_id
    assert ours.receipted_message_id == (their_receipted.decode() if their_receipted else None)
    assert ours.receipted_message_id == receipted
    assert ours.message_state == theirs.message_state == state


@pytest.mark.parametrize("cut", [17, 20, 30, 40])
def test_deliver_sm_cut_anywhere_is_a_codec_error(cut: int) -> None:
    raw = codec.encode_deliver(3, source=MSISDN, destination=ALNUM, esm_class=4, data_coding=0,
                               short_message=b"id:1 stat:DELIVRD")
    body = raw[16:cut]
    bad = struct.pack(">LLLL", 16 + len(body), codec.DELIVER_SM, 0, 3) + body
    with pytest.raises(codec.CodecError):
        codec.decode_deliver(bad)
