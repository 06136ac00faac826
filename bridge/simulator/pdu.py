"""A minimal SMPP 3.4 PDU codec for the simulator, written from SMPP v3.4 Issue 1.2 §3–§5.

Independent of smpplib on purpose (see bridge/simulator/text.py). struct-based, allocation-light:
the simulator decodes every submit_sm and encodes every response and receipt with it.

Layout reminders (§3.2): every PDU is a 16-octet header `command_length, command_id,
command_status, sequence_number` (4 × unsigned 32-bit, big endian) and a body; C-Octet Strings
end with a NUL and their maximum sizes *include* that NUL; optional parameters (TLVs, §3.2.4 /
§5.3) are `tag:u16 length:u16 value` and follow the mandatory fields.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final, Mapping

# ------------------------------------------------------------------ command ids (§5.1.2.1)

GENERIC_NACK: Final = 0x80000000
BIND_RECEIVER: Final = 0x00000001
BIND_RECEIVER_RESP: Final = 0x80000001
BIND_TRANSMITTER: Final = 0x00000002
BIND_TRANSMITTER_RESP: Final = 0x80000002
QUERY_SM: Final = 0x00000003
QUERY_SM_RESP: Final = 0x80000003
SUBMIT_SM: Final = 0x00000004
SUBMIT_SM_RESP: Final = 0x80000004
DELIVER_SM: Final = 0x00000005
DELIVER_SM_RESP: Final = 0x80000005
UNBIND: Final = 0x00000006
UNBIND_RESP: Final = 0x80000006
REPLACE_SM: Final = 0x00000007
CANCEL_SM: Final = 0x00000008
BIND_TRANSCEIVER: Final = 0x00000009
BIND_TRANSCEIVER_RESP: Final = 0x80000009
OUTBIND: Final = 0x0000000B
ENQUIRE_LINK: Final = 0x00000015
ENQUIRE_LINK_RESP: Final = 0x80000015
SUBMIT_MULTI: Final = 0x00000021
ALERT_NOTIFICATION: Final = 0x00000102
DATA_SM: Final = 0x00000103
RESPONSE_BIT: Final = 0x80000000

BIND_COMMANDS: Final = (BIND_RECEIVER, BIND_TRANSMITTER, BIND_TRANSCEIVER)

COMMAND_NAMES: Final[Mapping[int, str]] = {
    GENERIC_NACK: "generic_nack", BIND_RECEIVER: "bind_receiver",
    BIND_RECEIVER_RESP: "bind_receiver_resp", BIND_TRANSMITTER: "bind_transmitter",
    BIND_TRANSMITTER_RESP: "bind_transmitter_resp", QUERY_SM: "query_sm",
    QUERY_SM_RESP: "query_sm_resp", SUBMIT_SM: "submit_sm", SUBMIT_SM_RESP: "submit_sm_resp",
    DELIVER_SM: "deliver_sm", DELIVER_SM_RESP: "deliver_sm_resp", UNBIND: "unbind",
    UNBIND_RESP: "unbind_resp", REPLACE_SM: "replace_sm", CANCEL_SM: "cancel_sm",
    BIND_TRANSCEIVER: "bind_transceiver", BIND_TRANSCEIVER_RESP: "bind_transceiver_resp",
    OUTBIND: "outbind", ENQUIRE_LINK: "enquire_link", ENQUIRE_LINK_RESP: "enquire_link_resp",
    SUBMIT_MULTI: "submit_multi", ALERT_NOTIFICATION: "alert_notification", DATA_SM: "data_sm",
}

# ------------------------------------------------------------------ command_status (§5.1.3)

ESME_ROK: Final = 0x00
ESME_RINVMSGLEN: Final = 0x01
ESME_RINVCMDLEN: Final = 0x02
ESME_RINVCMDID: Final = 0x03
ESME_RINVBNDSTS: Final = 0x04
ESME_RALYBND: Final = 0x05
ESME_RSYSERR: Final = 0x08
ESME_RINVSRCADR: Final = 0x0A
ESME_RINVDSTADR: Final = 0x0B
ESME_RINVMSGID: Final = 0x0C
ESME_RBINDFAIL: Final = 0x0D
ESME_RINVPASWD: Final = 0x0E
ESME_RINVSYSID: Final = 0x0F
ESME_RMSGQFUL: Final = 0x14
ESME_RINVESMCLASS: Final = 0x43
ESME_RSUBMITFAIL: Final = 0x45
ESME_RTHROTTLED: Final = 0x58
ESME_RINVOPTPARSTREAM: Final = 0xC0
ESME_ROPTPARNOTALLWD: Final = 0xC1
ESME_RINVPARLEN: Final = 0xC2
ESME_RUNKNOWNERR: Final = 0xFF

# ------------------------------------------------------------------ TLV tags (§5.3.2)

TAG_RECEIPTED_MESSAGE_ID: Final = 0x001E
TAG_SAR_MSG_REF_NUM: Final = 0x020C
TAG_SAR_TOTAL_SEGMENTS: Final = 0x020E
TAG_SAR_SEGMENT_SEQNUM: Final = 0x020F
TAG_MESSAGE_PAYLOAD: Final = 0x0424
TAG_MESSAGE_STATE: Final = 0x0427
TAG_SC_INTERFACE_VERSION: Final = 0x0210

# message_state values (§5.3.2.35)
MESSAGE_STATES: Final[Mapping[str, int]] = {
    "ENROUTE": 1, "DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5, "ACCEPTD": 6,
    "UNKNOWN": 7, "REJECTD": 8,
}

HEADER_LEN: Final = 16
MAX_PDU_LEN: Final = 64 * 1024  # a sane upper bound; SMPP itself sets none

# C-Octet String maximum sizes, NUL included (§4.1 / §4.4.1)
MAX_SYSTEM_ID: Final = 16
MAX_PASSWORD: Final = 9
MAX_SYSTEM_TYPE: Final = 13
MAX_ADDRESS_RANGE: Final = 41
MAX_SERVICE_TYPE: Final = 6
MAX_ADDR: Final = 21
MAX_TIME: Final = 17
MAX_MESSAGE_ID: Final = 65
MAX_SHORT_MESSAGE: Final = 254

_HEADER = struct.Struct(">IIII")
_TLV_HEAD = struct.Struct(">HH")
_pack_header = _HEADER.pack
_unpack_header = _HEADER.unpack_from


class PduError(ValueError):
    """A PDU that cannot be decoded. `status` is the command_status to answer with."""

    def __init__(self, message: str, status: int = ESME_RINVCMDLEN) -> None:
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------ header / framing

@dataclass(frozen=True, slots=True)
class Header:
    length: int
    command_id: int
    status: int
    sequence: int


def decode_header(data: bytes) -> Header:
    """The first 16 octets of a PDU. Raises PduError when command_length is below 16 or above
    MAX_PDU_LEN (the stream cannot be trusted after that: answer generic_nack and close)."""
    if len(data) < HEADER_LEN:
        raise PduError(f"header needs {HEADER_LEN} octets, got {len(data)}")
    length, command_id, status, sequence = _unpack_header(data)
    if length < HEADER_LEN:
        raise PduError(f"command_length {length} is below {HEADER_LEN}")
    if length > MAX_PDU_LEN:
        raise PduError(f"command_length {length} is above {MAX_PDU_LEN}")
    return Header(length, command_id, status, sequence)


def encode_pdu(command_id: int, status: int, sequence: int, body: bytes = b"") -> bytes:
    return _pack_header(HEADER_LEN + len(body), command_id, status, sequence) + body


def generic_nack(sequence: int, status: int) -> bytes:
    return _pack_header(HEADER_LEN, GENERIC_NACK, status, sequence)


def enquire_link(sequence: int) -> bytes:
    return _pack_header(HEADER_LEN, ENQUIRE_LINK, 0, sequence)


def enquire_link_resp(sequence: int) -> bytes:
    return _pack_header(HEADER_LEN, ENQUIRE_LINK_RESP, 0, sequence)


def unbind(sequence: int) -> bytes:
    return _pack_header(HEADER_LEN, UNBIND, 0, sequence)


def unbind_resp(sequence: int) -> bytes:
    return _pack_header(HEADER_LEN, UNBIND_RESP, 0, sequence)


def deliver_sm_resp(sequence: int, status: int = 0) -> bytes:
    """deliver_sm_resp: message_id is unused and set to NULL (§4.6.2)."""
    return _pack_header(HEADER_LEN + 1, DELIVER_SM_RESP, status, sequence) + b"\x00"


# ------------------------------------------------------------------ C-Octet Strings

def encode_cstring(value: str | bytes, max_len: int | None = None) -> bytes:
    """value + NUL; max_len counts the NUL (SMPP's convention). Latin-1 for str."""
    raw = value.encode("latin-1") if isinstance(value, str) else value
    if b"\x00" in raw:
        raise ValueError("a C-Octet String cannot contain NUL")
    if max_len is not None and len(raw) + 1 > max_len:
        raise ValueError(f"{raw!r} is longer than {max_len - 1} octets")
    return raw + b"\x00"


def decode_cstring(data: bytes, offset: int, max_len: int | None = None) -> tuple[bytes, int]:
    """(value without NUL, offset after the NUL). PduError when no NUL within max_len (or the
    data)."""
    end = data.find(0, offset, None if max_len is None else offset + max_len)
    if end < 0:
        limit = "" if max_len is None else f" within {max_len} octets"
        raise PduError(f"C-Octet String at {offset} has no NUL{limit}")
    return data[offset:end], end + 1


# ------------------------------------------------------------------ TLVs (§3.2.4.1)

def encode_tlvs(tlvs: Mapping[int, bytes]) -> bytes:
    out = bytearray()
    for tag, value in tlvs.items():
        if not 0 <= tag <= 0xFFFF or len(value) > 0xFFFF:
            raise ValueError(f"TLV 0x{tag:04X} does not fit")
        out += _TLV_HEAD.pack(tag, len(value))
        out += value
    return bytes(out)


def decode_tlvs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """Every TLV from offset to the end; PduError (ESME_RINVOPTPARSTREAM) when one overruns."""
    tlvs: dict[int, bytes] = {}
    n = len(data)
    while offset < n:
        if offset + 4 > n:
            raise PduError(f"TLV header at {offset} is truncated", ESME_RINVOPTPARSTREAM)
        tag, length = _TLV_HEAD.unpack_from(data, offset)
        offset += 4
        if offset + length > n:
            raise PduError(f"TLV 0x{tag:04X} length {length} overruns the PDU",
                           ESME_RINVOPTPARSTREAM)
        tlvs[tag] = data[offset:offset + length]
        offset += length
    return tlvs


def tlv_int(value: bytes) -> int:
    return int.from_bytes(value, "big")


# ------------------------------------------------------------------ bind (§4.1)

@dataclass(frozen=True, slots=True)
class Bind:
    command_id: int
    system_id: str
    password: str
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""


def encode_bind(sequence: int, bind: Bind) -> bytes:
    body = (encode_cstring(bind.system_id, MAX_SYSTEM_ID)
            + encode_cstring(bind.password, MAX_PASSWORD)
            + encode_cstring(bind.system_type, MAX_SYSTEM_TYPE)
            + bytes((bind.interface_version, bind.addr_ton, bind.addr_npi))
            + encode_cstring(bind.address_range, MAX_ADDRESS_RANGE))
    return encode_pdu(bind.command_id, 0, sequence, body)


def decode_bind(command_id: int, body: bytes) -> Bind:
    system_id, i = decode_cstring(body, 0, MAX_SYSTEM_ID)
    password, i = decode_cstring(body, i, MAX_PASSWORD)
    system_type, i = decode_cstring(body, i, MAX_SYSTEM_TYPE)
    if i + 3 > len(body):
        raise PduError("bind body truncated")
    version, ton, npi = body[i], body[i + 1], body[i + 2]
    address_range, i = decode_cstring(body, i + 3, MAX_ADDRESS_RANGE)
    return Bind(command_id, system_id.decode("latin-1"), password.decode("latin-1"),
                system_type.decode("latin-1"), version, ton, npi,
                address_range.decode("latin-1"))


def encode_bind_resp(command_id: int, status: int, sequence: int, system_id: str,
                     *, interface_version: int | None = 0x34) -> bytes:
    """bind_*_resp. The body is not returned when command_status is non-zero (§4.1.2);
    sc_interface_version (0x0210) tells the ESME the SMSC speaks 3.4."""
    resp_id = command_id | RESPONSE_BIT
    if status:
        return encode_pdu(resp_id, status, sequence)
    body = encode_cstring(system_id, MAX_SYSTEM_ID)
    if interface_version is not None:
        body += encode_tlvs({TAG_SC_INTERFACE_VERSION: bytes((interface_version,))})
    return encode_pdu(resp_id, status, sequence, body)


# ------------------------------------------------------------------ submit_sm / deliver_sm (§4.4.1 / §4.6.1)

@dataclass(slots=True)
class ShortMessage:
    """The body of submit_sm and deliver_sm (same mandatory fields, §4.4.1 / §4.6.1)."""
    source_addr: str = ""
    destination_addr: str = ""
    short_message: bytes = b""
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    tlvs: dict[int, bytes] = field(default_factory=dict)


def encode_sm_body(sm: ShortMessage) -> bytes:
    if len(sm.short_message) > MAX_SHORT_MESSAGE:
        raise ValueError(f"short_message is {len(sm.short_message)} octets, above 254: "
                         "use message_payload")
    body = b"".join((
        encode_cstring(sm.service_type, MAX_SERVICE_TYPE),
        bytes((sm.source_addr_ton, sm.source_addr_npi)),
        encode_cstring(sm.source_addr, MAX_ADDR),
        bytes((sm.dest_addr_ton, sm.dest_addr_npi)),
        encode_cstring(sm.destination_addr, MAX_ADDR),
        bytes((sm.esm_class, sm.protocol_id, sm.priority_flag)),
        encode_cstring(sm.schedule_delivery_time, MAX_TIME),
        encode_cstring(sm.validity_period, MAX_TIME),
        bytes((sm.registered_delivery, sm.replace_if_present_flag, sm.data_coding,
               sm.sm_default_msg_id, len(sm.short_message))),
        sm.short_message,
    ))
    if sm.tlvs:
        body += encode_tlvs(sm.tlvs)
    return body


def decode_sm_body(body: bytes) -> ShortMessage:
    """Decode a submit_sm / deliver_sm body. Raises PduError with the status to answer:
    ESME_RINVCMDLEN for a truncated body, ESME_RINVSRCADR / ESME_RINVDSTADR for over-long
    addresses, ESME_RINVMSGLEN for sm_length beyond the data, ESME_RINVOPTPARSTREAM for TLVs."""
    find = body.find
    n = len(body)
    # service_type
    end = find(0, 0, MAX_SERVICE_TYPE)
    if end < 0:
        raise PduError("service_type: no NUL within 6 octets")
    service_type = body[:end].decode("latin-1")
    i = end + 1
    if i + 2 > n:
        raise PduError("submit body truncated at source_addr_ton")
    source_ton = body[i]
    source_npi = body[i + 1]
    i += 2
    end = find(0, i, i + MAX_ADDR)
    if end < 0:
        raise PduError("source_addr: no NUL within 21 octets",
                       ESME_RINVSRCADR if n - i >= MAX_ADDR else ESME_RINVCMDLEN)
    source = body[i:end].decode("latin-1")
    i = end + 1
    if i + 2 > n:
        raise PduError("submit body truncated at dest_addr_ton")
    dest_ton = body[i]
    dest_npi = body[i + 1]
    i += 2
    end = find(0, i, i + MAX_ADDR)
    if end < 0:
        raise PduError("destination_addr: no NUL within 21 octets",
                       ESME_RINVDSTADR if n - i >= MAX_ADDR else ESME_RINVCMDLEN)
    destination = body[i:end].decode("latin-1")
    i = end + 1
    if i + 3 > n:
        raise PduError("submit body truncated at esm_class")
    esm_class = body[i]
    protocol_id = body[i + 1]
    priority_flag = body[i + 2]
    i += 3
    end = find(0, i, i + MAX_TIME)
    if end < 0:
        raise PduError("schedule_delivery_time: no NUL within 17 octets")
    schedule = body[i:end].decode("latin-1")
    i = end + 1
    end = find(0, i, i + MAX_TIME)
    if end < 0:
        raise PduError("validity_period: no NUL within 17 octets")
    validity = body[i:end].decode("latin-1")
    i = end + 1
    if i + 5 > n:
        raise PduError("submit body truncated at registered_delivery")
    registered, replace_flag, data_coding, default_id, sm_length = body[i:i + 5]
    i += 5
    if i + sm_length > n:
        raise PduError(f"sm_length {sm_length} overruns the PDU", ESME_RINVMSGLEN)
    short_message = body[i:i + sm_length]
    i += sm_length
    tlvs = decode_tlvs(body, i) if i < n else {}
    return ShortMessage(source, destination, short_message, service_type, source_ton,
                        source_npi, dest_ton, dest_npi, esm_class, protocol_id, priority_flag,
                        schedule, validity, registered, replace_flag, data_coding, default_id,
                        tlvs)


def encode_submit_sm(sequence: int, sm: ShortMessage) -> bytes:
    return encode_pdu(SUBMIT_SM, 0, sequence, encode_sm_body(sm))


def encode_deliver_sm(sequence: int, sm: ShortMessage) -> bytes:
    return encode_pdu(DELIVER_SM, 0, sequence, encode_sm_body(sm))


def encode_submit_sm_resp(sequence: int, status: int, message_id: str) -> bytes:
    """submit_sm_resp; the body is not returned when command_status is non-zero (§4.4.2)."""
    if status:
        return _pack_header(HEADER_LEN, SUBMIT_SM_RESP, status, sequence)
    raw = message_id.encode("latin-1")
    return _pack_header(HEADER_LEN + len(raw) + 1, SUBMIT_SM_RESP, 0, sequence) + raw + b"\x00"


def decode_submit_sm_resp(body: bytes) -> str:
    if not body:
        return ""
    value, _ = decode_cstring(body, 0, MAX_MESSAGE_ID)
    return value.decode("latin-1")


# ------------------------------------------------------------------ receipts (Appendix B)

def receipt_text(message_id: str, stat: str, *, submit_date: str, done_date: str,
                 sub: str = "001", dlvrd: str | None = None, err: str = "000",
                 text: str = "", text_label: str = "text") -> str:
    """`id:… sub:… dlvrd:… submit date:… done date:… stat:… err:… text:…` (Appendix B).
    dlvrd defaults to 001 for DELIVRD, 000 otherwise; text is cut to 20 characters."""
    if dlvrd is None:
        dlvrd = "001" if stat == "DELIVRD" else "000"
    return (f"id:{message_id} sub:{sub} dlvrd:{dlvrd} submit date:{submit_date} "
            f"done date:{done_date} stat:{stat} err:{err} {text_label}:{text[:20]}")


def receipt_tlvs(message_id: str, stat: str, message_state: int | None = None) -> dict[int, bytes]:
    state = MESSAGE_STATES.get(stat, 7) if message_state is None else message_state
    return {TAG_RECEIPTED_MESSAGE_ID: message_id.encode("latin-1") + b"\x00",
            TAG_MESSAGE_STATE: bytes((state,))}


def build_receipt(sequence: int, *, source: str, source_ton: int, source_npi: int,
                  destination: str, dest_ton: int, dest_npi: int, text: str,
                  tlvs: Mapping[int, bytes]) -> bytes:
    """A delivery receipt deliver_sm (esm_class 0x04, data_coding 0). `source` is the handset
    (the original destination), `destination` the original sender."""
    sm = ShortMessage(source_addr=source, destination_addr=destination,
                      short_message=text.encode("latin-1"), source_addr_ton=source_ton,
                      source_addr_npi=source_npi, dest_addr_ton=dest_ton, dest_addr_npi=dest_npi,
                      esm_class=0x04, tlvs=dict(tlvs))
    return encode_deliver_sm(sequence, sm)


def build_mo(sequence: int, *, source: str, destination: str, user_data: bytes,
             data_coding: int, udh: bytes = b"", source_ton: int = 1, source_npi: int = 1,
             dest_ton: int = 0, dest_npi: int = 0,
             tlvs: Mapping[int, bytes] | None = None) -> bytes:
    """A mobile-originated deliver_sm: UDHI (0x40) set when udh is given; user data above 254
    octets goes in message_payload with an empty short_message."""
    payload = udh + user_data
    extra = dict(tlvs or {})
    if len(payload) > MAX_SHORT_MESSAGE:
        extra[TAG_MESSAGE_PAYLOAD] = payload
        payload = b""
    sm = ShortMessage(source_addr=source, destination_addr=destination, short_message=payload,
                      source_addr_ton=source_ton, source_addr_npi=source_npi,
                      dest_addr_ton=dest_ton, dest_addr_npi=dest_npi,
                      esm_class=0x40 if udh else 0x00, data_coding=data_coding, tlvs=extra)
    return encode_deliver_sm(sequence, sm)
