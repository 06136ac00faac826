"""The simulator's SMPP 3.4 codec, checked byte by byte against the spec (SMPP v3.4 Issue 1.2
§3.2, §4.1, §4.4, §4.6, §5.3, Appendix B) and against smpplib's codec as an independent peer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.simulator import pdu as P
from bridge.simulator.server import ReceivedSubmit, _receipt_body
from bridge.simulator.text import ConcatInfo, decode_gsm7, parse_udh

SIMULATOR = Path(__file__).resolve().parents[2] / "bridge" / "simulator"


def test_simulator_imports_neither_smpplib_nor_bridge_core() -> None:
    """The independence rule: the simulator decodes on its own terms."""
    for path in sorted(SIMULATOR.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert not name.startswith("smpplib"), f"{path.name} imports {name}"
                if name.startswith("bridge"):
                    assert name == "bridge.config" or name.startswith("bridge.simulator"), \
                        f"{path.name} imports {name}"


# ------------------------------------------------------------------ byte-by-byte

def test_bind_transceiver_bytes() -> None:
    expected = bytes.fromhex(
        "00000023"          # command_length 35
        "00000009"          # bind_transceiver
        "00000000"          # command_status
        "00000001"          # sequence_number
        "62726964676500"    # system_id "bridge\0"
        "73656372657400"    # password "secret\0"
        "00"                # system_type ""
        "34"                # interface_version 3.4
        "00" "00"           # addr_ton, addr_npi
        "00")               # address_range ""
    raw = P.encode_bind(1, P.Bind(P.BIND_TRANSCEIVER, "bridge", "secret"))
    assert raw == expected
    header = P.decode_header(raw)
    assert header == P.Header(35, 0x09, 0, 1)
    bind = P.decode_bind(header.command_id, raw[16:])
    assert (bind.system_id, bind.password, bind.interface_version) == ("bridge", "secret", 0x34)


def test_bind_resp_bytes_ok_and_error() -> None:
    ok = P.encode_bind_resp(P.BIND_TRANSCEIVER, 0, 1, "SMSC")
    assert ok == bytes.fromhex("0000001a" "80000009" "00000000" "00000001"
                               "534d534300"            # system_id "SMSC\0"
                               "0210" "0001" "34")     # sc_interface_version TLV = 0x34
    # §4.1.2: no body when command_status is non-zero
    assert P.encode_bind_resp(P.BIND_TRANSMITTER, 0x0E, 2, "SMSC") == bytes.fromhex(
        "00000010" "80000002" "0000000e" "00000002")


# A two-part GSM message with an 8-bit concatenation UDH; part 1 user data "Hi €{".
SUBMIT_PART1 = bytes.fromhex(
    "0000003e"                      # command_length 62
    "00000004"                      # submit_sm
    "00000000"
    "0000002a"                      # sequence 42
    "00"                            # service_type ""
    "05" "00" "41434d4500"          # source TON 5 NPI 0 "ACME"
    "01" "01" "34343734303031323334353600"  # dest TON 1 NPI 1 "447400123456"
    "40"                            # esm_class: UDHI
    "00" "00"                       # protocol_id, priority_flag
    "00" "00"                       # schedule_delivery_time, validity_period
    "01"                            # registered_delivery: receipt
    "00" "00" "00"                  # replace_if_present, data_coding GSM, sm_default_msg_id
    "0d"                            # sm_length 13
    "050003a70201"                  # UDH: IE 00, ref 0xA7, 2 parts, part 1
    "4869201b651b28")               # "Hi " ESC 0x65 (€) ESC 0x28 ({)


def test_submit_sm_two_part_udh8_bytes() -> None:
    sm = P.ShortMessage(source_addr="ACME", source_addr_ton=5, source_addr_npi=0,
                        destination_addr="447400123456", dest_addr_ton=1, dest_addr_npi=1,
                        esm_class=0x40, registered_delivery=1, data_coding=0,
                        short_message=bytes.fromhex("050003a70201") + b"Hi \x1b\x65\x1b\x28")
    assert P.encode_submit_sm(42, sm) == SUBMIT_PART1
    decoded = P.decode_sm_body(SUBMIT_PART1[16:])
    assert decoded == sm
    udh, user_data = parse_udh(decoded.short_message)
    assert udh.raw == bytes.fromhex("050003a70201")
    assert udh.concat == ConcatInfo(0xA7, 2, 1, 8)
    assert decode_gsm7(user_data) == "Hi €{"


def test_submit_sm_part_encoded_by_smpplib_decodes_the_same() -> None:
    """smpplib as an independent encoder of the same part."""
    from smpplib import smpp

    class Stub:
        sequence = 41

        def next_sequence(self) -> int:
            self.sequence += 1
            return self.sequence

    pdu = smpp.make_pdu("submit_sm", client=Stub(), source_addr_ton=5, source_addr_npi=0,
                        source_addr="ACME", dest_addr_ton=1, dest_addr_npi=1,
                        destination_addr="447400123456", esm_class=0x40,
                        registered_delivery=1, data_coding=0,
                        short_message=bytes.fromhex("050003a70201") + b"Hi \x1b\x65\x1b\x28")
    raw = pdu.generate()
    assert P.decode_sm_body(raw[16:]) == P.decode_sm_body(SUBMIT_PART1[16:])


def test_submit_sm_resp_bytes() -> None:
    assert P.encode_submit_sm_resp(7, 0, "a0000001") == bytes.fromhex(
        "00000019" "80000004" "00000000" "00000007" "613030303030303100")
    # §4.4.2: no body (no message_id) with a non-zero command_status
    assert P.encode_submit_sm_resp(8, 0x58, "ignored") == bytes.fromhex(
        "00000010" "80000004" "00000058" "00000008")
    assert P.decode_submit_sm_resp(bytes.fromhex("613030303030303100")) == "a0000001"


RECEIPT_TEXT = (b"id:10 sub:001 dlvrd:001 submit date:2401021304 done date:2401021305 "
                b"stat:DELIVRD err:000 text:Hello")


def test_receipt_deliver_sm_bytes() -> None:
    text = P.receipt_text("10", "DELIVRD", submit_date="2401021304", done_date="2401021305",
                          text="Hello")
    assert text.encode() == RECEIPT_TEXT
    raw = P.build_receipt(3, source="447400123456", source_ton=1, source_npi=1,
                          destination="ACME", dest_ton=5, dest_npi=0, text=text,
                          tlvs=P.receipt_tlvs("10", "DELIVRD"))
    body = (bytes.fromhex("00"                              # service_type
                          "0101" "34343734303031323334353600"  # source: the handset
                          "0500" "41434d4500"                # destination: the sender
                          "04"                               # esm_class: delivery receipt
                          "0000" "00" "00"                   # pid, priority, sched, validity
                          "00000000")                        # reg, replace, dc, default id
            + bytes((len(RECEIPT_TEXT),)) + RECEIPT_TEXT
            + bytes.fromhex("001e" "0003" "313000"           # receipted_message_id "10\0"
                            "0427" "0001" "02"))             # message_state DELIVERED
    assert raw == P.encode_pdu(P.DELIVER_SM, 0, 3, body)
    assert raw[:16] == bytes.fromhex(f"{16 + len(body):08x}" "00000005" "00000000" "00000003")


def test_server_fast_receipt_body_equals_the_codec() -> None:
    submit = ReceivedSubmit(
        1, "a", "bridge", "ACME", 5, 0, "447400123456", 1, 1, 0, 0, 0, "", "", 1, 0, b"Hello",
        b"", b"Hello", None, {}, "Hello", 0.0)
    tlvs = P.receipt_tlvs("10", "DELIVRD")
    fast = _receipt_body(submit, RECEIPT_TEXT, tlvs)
    reference = P.build_receipt(1, source="447400123456", source_ton=1, source_npi=1,
                                destination="ACME", dest_ton=5, dest_npi=0,
                                text=RECEIPT_TEXT.decode(), tlvs=tlvs)[16:]
    assert fast == reference


def test_receipt_parsed_by_smpplib() -> None:
    """smpplib as an independent decoder of the receipt the simulator sends."""
    from smpplib import smpp

    class Stub:
        sequence = 0

        def next_sequence(self) -> int:
            self.sequence += 1
            return self.sequence

    raw = P.build_receipt(9, source="447400123456", source_ton=1, source_npi=1,
                          destination="ACME", dest_ton=5, dest_npi=0,
                          text=RECEIPT_TEXT.decode(), tlvs=P.receipt_tlvs("10", "UNDELIV"))
    parsed = smpp.parse_pdu(raw, client=Stub(), allow_unknown_opt_params=True)
    assert parsed.command == "deliver_sm"
    assert parsed.esm_class == 0x04
    assert parsed.short_message == RECEIPT_TEXT
    assert parsed.source_addr == b"447400123456" and parsed.destination_addr == b"ACME"
    assert parsed.receipted_message_id == b"10"
    assert parsed.message_state == 5


def test_header_only_pdus() -> None:
    assert P.enquire_link(5) == bytes.fromhex("00000010" "00000015" "00000000" "00000005")
    assert P.enquire_link_resp(5) == bytes.fromhex("00000010" "80000015" "00000000" "00000005")
    assert P.unbind(6) == bytes.fromhex("00000010" "00000006" "00000000" "00000006")
    assert P.unbind_resp(6) == bytes.fromhex("00000010" "80000006" "00000000" "00000006")
    assert P.generic_nack(9, 3) == bytes.fromhex("00000010" "80000000" "00000003" "00000009")
    assert P.deliver_sm_resp(4) == bytes.fromhex("00000011" "80000005" "00000000" "00000004" "00")


def test_mo_over_254_octets_goes_in_message_payload() -> None:
    raw = P.build_mo(1, source="447400123456", destination="ACME", user_data=b"x" * 300,
                     data_coding=0)
    sm = P.decode_sm_body(raw[16:])
    assert sm.short_message == b""
    assert sm.tlvs == {P.TAG_MESSAGE_PAYLOAD: b"x" * 300}
    assert sm.esm_class == 0


# ------------------------------------------------------------------ properties

cstring_values = st.binary(max_size=64).filter(lambda b: b"\x00" not in b)


@given(cstring_values, st.binary(max_size=8))
def test_cstring_round_trip(value: bytes, tail: bytes) -> None:
    raw = P.encode_cstring(value)
    assert raw[-1] == 0 and len(raw) == len(value) + 1
    decoded, offset = P.decode_cstring(raw + tail, 0)
    assert decoded == value and offset == len(raw)


@given(cstring_values)
def test_cstring_max_len_counts_the_nul(value: bytes) -> None:
    limit = len(value) + 1
    assert P.decode_cstring(P.encode_cstring(value, limit), 0, limit)[0] == value
    with pytest.raises(ValueError):
        P.encode_cstring(value + b"x", limit)
    with pytest.raises(P.PduError):
        P.decode_cstring(value + b"x\x00", 0, limit)


@given(st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=300), max_size=8))
def test_tlv_round_trip(tlvs: dict[int, bytes]) -> None:
    raw = P.encode_tlvs(tlvs)
    assert len(raw) == sum(4 + len(v) for v in tlvs.values())
    assert P.decode_tlvs(raw) == tlvs


addr = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)
short_messages = st.builds(
    P.ShortMessage, source_addr=addr, destination_addr=addr,
    short_message=st.binary(max_size=254), service_type=st.sampled_from(["", "CMT", "WAP"]),
    source_addr_ton=st.integers(0, 6), source_addr_npi=st.integers(0, 18),
    dest_addr_ton=st.integers(0, 6), dest_addr_npi=st.integers(0, 18),
    esm_class=st.integers(0, 255), protocol_id=st.integers(0, 255),
    priority_flag=st.integers(0, 3),
    schedule_delivery_time=st.sampled_from(["", "240102130405000+"]),
    validity_period=st.sampled_from(["", "000002000000000R"]),
    registered_delivery=st.integers(0, 31), data_coding=st.integers(0, 255),
    tlvs=st.dictionaries(st.integers(0x1400, 0x14FF), st.binary(max_size=20), max_size=3))


@given(short_messages)
def test_short_message_body_round_trip(sm: P.ShortMessage) -> None:
    assert P.decode_sm_body(P.encode_sm_body(sm)) == sm


# ------------------------------------------------------------------ malformed input

@pytest.mark.parametrize("length", [0, 8, 15])
def test_header_length_below_16(length: int) -> None:
    with pytest.raises(P.PduError) as info:
        P.decode_header(bytes.fromhex(f"{length:08x}" "00000004" "00000000" "00000001"))
    assert info.value.status == P.ESME_RINVCMDLEN


def test_header_length_above_64k() -> None:
    with pytest.raises(P.PduError):
        P.decode_header(bytes.fromhex(f"{64 * 1024 + 1:08x}" "00000004" "00000000" "00000001"))
    assert P.decode_header(bytes.fromhex(f"{64 * 1024:08x}" "00000004" "00000000" "00000001"))


def test_every_truncation_of_a_submit_body_is_a_pdu_error() -> None:
    body = SUBMIT_PART1[16:] + P.encode_tlvs({P.TAG_SAR_MSG_REF_NUM: b"\x00\x01"})
    for cut in range(len(body)):
        truncated = body[:cut]
        try:
            P.decode_sm_body(truncated)
        except P.PduError as exc:
            assert exc.status in (P.ESME_RINVCMDLEN, P.ESME_RINVMSGLEN,
                                  P.ESME_RINVOPTPARSTREAM)
        else:
            # only a cut exactly between two whole TLVs / at the end of short_message parses
            assert cut == len(SUBMIT_PART1) - 16


def test_overlong_addresses_get_their_own_status() -> None:
    sm = P.ShortMessage(source_addr="1" * 20, destination_addr="2" * 20)
    body = P.encode_sm_body(sm)
    long_source = body.replace(b"1" * 20, b"1" * 25)
    with pytest.raises(P.PduError) as info:
        P.decode_sm_body(long_source)
    assert info.value.status == P.ESME_RINVSRCADR
    long_dest = body.replace(b"2" * 20, b"2" * 25)
    with pytest.raises(P.PduError) as info:
        P.decode_sm_body(long_dest)
    assert info.value.status == P.ESME_RINVDSTADR


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_garbage_bodies_never_raise_anything_but_pdu_error(data: bytes) -> None:
    for decode in (P.decode_sm_body, lambda b: P.decode_bind(P.BIND_TRANSCEIVER, b),
                   P.decode_tlvs):
        try:
            decode(data)
        except P.PduError:
            pass


def test_smpplib_parses_everything_the_simulator_sends() -> None:
    """The bridge's client decodes with smpplib: every PDU kind the simulator emits parses."""
    from smpplib import smpp

    class Stub:
        sequence = 0

        def next_sequence(self) -> int:
            self.sequence += 1
            return self.sequence

    sar = {P.TAG_SAR_MSG_REF_NUM: b"\x00\x01", P.TAG_SAR_TOTAL_SEGMENTS: b"\x02",
           P.TAG_SAR_SEGMENT_SEQNUM: b"\x01"}
    expected = [
        (P.encode_bind_resp(P.BIND_TRANSCEIVER, 0, 1, "bridge"), "bind_transceiver_resp", 0),
        (P.encode_bind_resp(P.BIND_TRANSMITTER, 0x0E, 2, "bridge"), "bind_transmitter_resp", 14),
        (P.encode_bind_resp(P.BIND_RECEIVER, 0, 3, "bridge"), "bind_receiver_resp", 0),
        (P.encode_submit_sm_resp(4, 0, "a123"), "submit_sm_resp", 0),
        (P.encode_submit_sm_resp(5, 0x58, ""), "submit_sm_resp", 0x58),
        (P.generic_nack(6, 8), "generic_nack", 8),
        (P.enquire_link(7), "enquire_link", 0),
        (P.enquire_link_resp(8), "enquire_link_resp", 0),
        (P.unbind(9), "unbind", 0),
        (P.unbind_resp(10), "unbind_resp", 0),
        (P.build_mo(11, source="447400123456", destination="ACME", user_data=b"abc",
                    data_coding=0, tlvs=sar), "deliver_sm", 0),
        (P.build_mo(12, source="447400123456", destination="ACME", user_data=b"x" * 300,
                    data_coding=0), "deliver_sm", 0),
        (P.build_mo(13, source="447400123456", destination="ACME", user_data=b"\x00a",
                    udh=bytes.fromhex("050003010201"), data_coding=8), "deliver_sm", 0),
    ]
    for raw, command, status in expected:
        parsed = smpp.parse_pdu(raw, client=Stub(), allow_unknown_opt_params=True)
        assert (parsed.command, parsed.status) == (command, status)
        assert parsed.sequence == P.decode_header(raw).sequence
