"""Text -> the submit_sm parts that carry it (SPEC §6 SMPP upstream).

`plan_message` picks the encoding (bridge.core.encoding), cuts the encoded text into parts that
each fit one SMS on the air, and says how the parts are tied together:

- UDH8 / UDH16: a concatenation UDH in each short_message (esm_class UDHI 0x40), the portable
  way; 16-bit references make collisions between concurrent long messages rarer.
- SAR: the same cut, with the sar_* TLVs instead of a UDH; the SMSC builds the UDH itself.
- PAYLOAD: the whole text in one submit_sm's message_payload TLV; the SMSC cuts it.

Cuts never separate a GSM escape from its code nor the halves of a UTF-16 surrogate pair, so
every part decodes on its own. The UDH reference comes in as an argument: the core has no
randomness and the same input always gives the same plan.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from bridge.core.encoding import (
    SINGLE_LIMIT,
    WAP_PUSH_TYPE,
    Encoding,
    data_coding_for,
    encode_best,
    multi_limits,
    resolve_type,
)
from bridge.core.errors import BridgeError, ErrorName
from bridge.core.wap import DATA_CODING_8BIT, PORT_IE, service_indication

UDHI = 0x40
#: dest_addr_subunit value "MS display": flash for Latin-1, which has no class-0 DCS.
SUBUNIT_MS_DISPLAY = 1
_MAX_CONCAT_PARTS = 255  # the UDH and sar_total_segments hold the total in one octet


class ConcatMode(str, Enum):
    UDH8 = "udh8"
    UDH16 = "udh16"
    SAR = "sar"
    PAYLOAD = "payload"


@dataclass(frozen=True)
class Segment:
    """One submit_sm's worth of text. `payload` is the encoded text of this part only (GSM as
    unpacked septets), `udh` the header that precedes it in short_message (b"" if none).
    `in_payload_tlv` marks PAYLOAD mode, where the text travels in message_payload instead."""

    seq: int
    total: int
    text: str
    payload: bytes
    udh: bytes
    in_payload_tlv: bool = False

    @property
    def short_message(self) -> bytes:
        """The submit_sm short_message: empty in PAYLOAD mode, SMPP forbids both at once."""
        if self.in_payload_tlv:
            return b""
        return self.udh + self.payload if self.udh else self.payload


@dataclass(frozen=True)
class SegmentPlan:
    """Everything the dispatcher needs to submit a text: one Segment per submit_sm plus the
    fields common to all of them. `air_parts` is the number of SMS on the air, which differs
    from `parts` only in PAYLOAD mode (one submit_sm, cut by the SMSC)."""

    encoding: Encoding
    flash: bool
    data_coding: int
    esm_class: int
    concat: ConcatMode
    reference: int | None
    segments: tuple[Segment, ...]
    dest_addr_subunit: int | None
    air_parts: int = 1

    @property
    def parts(self) -> int:
        """Number of submit_sm PDUs (and stored parts)."""
        return len(self.segments)

    def tlvs(self, seg: Segment) -> tuple[tuple[str, int | bytes], ...]:
        """Optional parameters of `seg`'s submit_sm, named as smpplib names them."""
        out: list[tuple[str, int | bytes]] = []
        if self.concat is ConcatMode.SAR and seg.total > 1 and self.reference is not None:
            out.append(("sar_msg_ref_num", self.reference))
            out.append(("sar_total_segments", seg.total))
            out.append(("sar_segment_seqnum", seg.seq))
        elif seg.in_payload_tlv:
            out.append(("message_payload", seg.payload))
        if self.dest_addr_subunit is not None:
            out.append(("dest_addr_subunit", self.dest_addr_subunit))
        return tuple(out)


def _udh(concat: ConcatMode, reference: int, total: int, seq: int) -> bytes:
    """TS 23.040 §9.2.3.24.1 (IEI 00, 8-bit ref) / §9.2.3.24.8 (IEI 08, 16-bit ref) header,
    with its UDHL length octet first."""
    if concat is ConcatMode.UDH8:
        return bytes((0x05, 0x00, 0x03, reference, total, seq))
    if concat is ConcatMode.UDH16:
        return bytes((0x06, 0x08, 0x04, reference >> 8, reference & 0xFF, total, seq))
    return b""


def reference_max(concat: ConcatMode) -> int:
    """The largest concatenation reference `plan_message` accepts for `concat`."""
    return 0xFFFF if concat in (ConcatMode.UDH16, ConcatMode.PAYLOAD) else 0xFF


def max_text_chars(max_parts: int, concat: ConcatMode = ConcatMode.UDH8) -> int:
    """No text longer than this fits in `max_parts` parts in any encoding: every character
    takes at least one unit and GSM 7-bit holds the most units per part. A cheap bound that
    lets an ingress refuse (or cut) a huge text before anything encodes it; `plan_message`
    itself stays exact (its refusal names the real part count)."""
    if max_parts == 1:
        return SINGLE_LIMIT[Encoding.GSM7]
    return max_parts * multi_limits(ConcatMode(concat) is ConcatMode.UDH16)[Encoding.GSM7]


def plan_message(
    text: str,
    *,
    type_code: int | None = None,
    flash: bool = False,
    concat: ConcatMode = ConcatMode.UDH8,
    max_parts: int = 10,
    reference: int = 0,
    candidates: tuple[Encoding, ...] = (Encoding.GSM7, Encoding.LATIN1, Encoding.UCS2),
    encoding: Encoding | None = None,
    message_class: int | None = None,
    url: str | None = None,
) -> SegmentPlan:
    """Plan the submit_sm PDUs for `text`.

    A legacy `type_code` (SPEC §6) fixes the encoding, or `encoding` does (the HTTP dialects'
    own coding fields: BINARY takes each character as one octet); otherwise the cheapest
    exact one among `candidates` is used. `message_class` (0..3) goes into the data_coding
    (flash is class 0). Type 4 is a WAP Push: `text` shown, `url` opened
    (`plan_wap_push`). Refusals are BridgeErrors: INVALID_TYPE for the type code or a class
    the encoding cannot carry, INVALID_MESSAGE for an empty or unencodable text and (with
    too_big=True) for more parts than `max_parts`. PAYLOAD mode counts parts as UDH8 would
    cut them, since the SMSC will. A `reference` out of range for the mode (0..255,
    0..65535 for UDH16) is a caller bug: ValueError.
    """
    if type(concat) is not ConcatMode:  # a plain "udh8" string; the enum call costs per request
        concat = ConcatMode(concat)
    if not 0 <= reference <= reference_max(concat):
        raise ValueError(f"reference {reference} out of range for {concat.value}")
    if max_parts < 1:
        raise ValueError("max_parts must be at least 1")
    if type_code is not None and encoding is not None:
        raise ValueError("a type code and an encoding cannot both be given")
    text_type = resolve_type(type_code, flash)
    if type_code == WAP_PUSH_TYPE:
        return plan_wap_push(text, url or "", concat=concat, max_parts=max_parts,
                             reference=reference)
    if not text:
        raise BridgeError(ErrorName.INVALID_MESSAGE, "empty message")
    if encoding is not None:
        candidates = (encoding,)
    elif text_type.encoding is not None:
        candidates = (text_type.encoding,)
    enc, data, ends = encode_best(text, candidates, udh16=concat is ConcatMode.UDH16)
    total = len(ends)
    if total > max_parts:
        raise BridgeError(ErrorName.INVALID_MESSAGE, f"needs {total} parts, max_parts is {max_parts}",
                          too_big=True)
    if total > _MAX_CONCAT_PARTS and concat is not ConcatMode.PAYLOAD:
        raise BridgeError(ErrorName.INVALID_MESSAGE,
                          f"needs {total} parts, at most {_MAX_CONCAT_PARTS} can be concatenated",
                          too_big=True)
    flash = text_type.flash or message_class == 0
    if enc is Encoding.LATIN1 and message_class not in (None, 0):
        raise BridgeError(ErrorName.INVALID_TYPE,
                          f"Latin-1 cannot carry message class {message_class}")
    data_coding = data_coding_for(enc, flash, message_class)
    subunit = SUBUNIT_MS_DISPLAY if flash and enc is Encoding.LATIN1 else None

    if total == 1 or concat is ConcatMode.PAYLOAD:
        seg = Segment(1, 1, text, data, b"", concat is ConcatMode.PAYLOAD)
        return SegmentPlan(enc, flash, data_coding, 0, concat, None, (seg,), subunit, total)

    segments: list[Segment] = []
    start = pos = 0
    for seq, end in enumerate(ends, 1):
        payload = data[start:end]
        if enc is Encoding.GSM7:
            chars = len(payload) - payload.count(0x1B)
            part_text = text[pos:pos + chars]
        elif enc in (Encoding.LATIN1, Encoding.BINARY):
            part_text = text[pos:end]
        else:  # UCS2: pairs are never split, so each part decodes on its own
            part_text = payload.decode("utf-16-be")
        pos += len(part_text)
        segments.append(Segment(seq, total, part_text, payload, _udh(concat, reference, total, seq)))
        start = end
    esm_class = UDHI if concat is not ConcatMode.SAR else 0
    return SegmentPlan(enc, flash, data_coding, esm_class, concat, reference, tuple(segments),
                       subunit, total)


def plan_wap_push(text: str, url: str, *, concat: ConcatMode = ConcatMode.UDH8,
                  max_parts: int = 10, reference: int = 0) -> SegmentPlan:
    """A WAP Push Service Indication (bridge.core.wap) as 8-bit parts. Every part carries the
    WDP port element in its UDH; a PDU longer than one SMS is cut with the concatenation
    element beside it (UDH8/UDH16), or with the SAR TLVs in SAR mode. PAYLOAD mode cuts it
    as UDH8 does: the SMSC cannot be asked to keep the ports in every part it makes."""
    if not url:
        raise BridgeError(ErrorName.INVALID_PARAMETER, "a WAP Push (type 4) needs a url")
    pdu = service_indication(url, text)
    if concat is ConcatMode.PAYLOAD:
        concat = ConcatMode.UDH8
    single = SINGLE_LIMIT[Encoding.BINARY] - len(PORT_IE) - 1
    concat_ie = len(_udh(ConcatMode.UDH16 if concat is ConcatMode.UDH16 else ConcatMode.UDH8,
                         0, 1, 1)) - 1
    step = single - concat_ie  # the SMSC adds the same element in SAR mode
    chunks = [pdu] if len(pdu) <= single else \
        [pdu[i:i + step] for i in range(0, len(pdu), step)]
    total = len(chunks)
    if total > max_parts:
        raise BridgeError(ErrorName.INVALID_MESSAGE,
                          f"the WAP Push needs {total} parts, max_parts is {max_parts}",
                          too_big=True)
    segments = []
    for seq, chunk in enumerate(chunks, 1):
        elements = PORT_IE
        if total > 1 and concat is not ConcatMode.SAR:
            elements += _udh(concat, reference, total, seq)[1:]
        udh = bytes((len(elements),)) + elements
        segments.append(Segment(seq, total, text if seq == 1 else "", chunk, udh))
    return SegmentPlan(Encoding.BINARY, False, DATA_CODING_8BIT, UDHI, concat,
                       reference if total > 1 else None, tuple(segments), None, total)


def truncate_to_fit(text: str, fits: Callable[[str], bool], marker: str = "…") -> str:
    """The longest prefix of `text` (whole code points, trailing blanks dropped) that still
    fits once `marker` is appended; `text` itself when it fits. `fits` is the real planner, so
    GSM escape pairs and UCS-2 surrogate pairs are counted exactly as they will be sent.
    Fitting is monotonic in the prefix length (any encoding of a text also encodes its
    prefixes, in no more parts), so a binary search finds the cut."""
    if fits(text):
        return text
    lo, hi = 0, len(text)  # prefix lo fits (with the marker), prefix hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(text[:mid].rstrip() + marker):
            lo = mid
        else:
            hi = mid
    return text[:lo].rstrip() + marker


# ---------------------------------------------------------------- plans per route, restarts

#: A part's optional parameters as smpplib names them.
Tlvs = tuple[tuple[str, int | bytes], ...]

_IEI_CONCAT8, _IEI_CONCAT16, _IEI_PORTS16 = 0x00, 0x08, 0x05


def encode_tlvs(tlvs: Tlvs) -> str:
    """A part's TLVs as the store keeps them: JSON pairs, bytes as {"hex": …}."""
    if not tlvs:
        return "[]"  # the usual case (UDH concatenation, no flash subunit)
    return json.dumps([[name, {"hex": value.hex()} if isinstance(value, bytes) else value]
                       for name, value in tlvs])


def decode_tlvs(stored: str) -> Tlvs:
    if stored == "[]":  # the common case: skip the JSON parser per submit
        return ()
    return tuple((name, bytes.fromhex(value["hex"]) if isinstance(value, dict) else int(value))
                 for name, value in json.loads(stored))


@dataclass(frozen=True)
class RouteForm:
    """How one SMSC takes a long message and which encodings it takes ([[smsc]] concat and
    encodings): a message is planned for the route it goes on."""

    concat: ConcatMode = ConcatMode.UDH8
    encodings: tuple[Encoding, ...] = (Encoding.GSM7, Encoding.LATIN1, Encoding.UCS2)

    def takes(self, encoding: Encoding) -> bool:
        """8-bit data (a binary message, a WAP Push) is data, not text: every SMSC takes it."""
        return encoding is Encoding.BINARY or encoding in self.encodings


def _ies(short_message: bytes) -> list[tuple[int, int, int]]:
    """(IEI, offset of its data in short_message, its length) of each UDH element."""
    end = 1 + short_message[0] if short_message else 0
    found, i = [], 1
    while i + 2 <= end and i + 2 + short_message[i + 1] <= end:
        found.append((short_message[i], i + 2, short_message[i + 1]))
        i += 2 + short_message[i + 1]
    return found


def concat_of(short_message: bytes, esm_class: int, tlvs: Tlvs) -> ConcatMode | None:
    """How a stored part ties to its message: its concatenation form, PAYLOAD for a text in
    message_payload, None for a lone part in short_message (it fits any form)."""
    names = {name for name, _ in tlvs}
    if "message_payload" in names:
        return ConcatMode.PAYLOAD
    if "sar_msg_ref_num" in names:
        return ConcatMode.SAR
    if esm_class & UDHI:
        for iei, _, length in _ies(short_message):
            if iei == _IEI_CONCAT8 and length == 3:
                return ConcatMode.UDH8
            if iei == _IEI_CONCAT16 and length == 4:
                return ConcatMode.UDH16
    return None


def reference_of(short_message: bytes, esm_class: int, tlvs: Tlvs) -> int | None:
    """The concatenation reference a stored part carries (UDH element or SAR), or None."""
    for name, value in tlvs:
        if name == "sar_msg_ref_num" and isinstance(value, int):
            return value
    if esm_class & UDHI:
        for iei, at, length in _ies(short_message):
            if iei == _IEI_CONCAT8 and length == 3:
                return short_message[at]
            if iei == _IEI_CONCAT16 and length == 4:
                return int.from_bytes(short_message[at:at + 2], "big")
    return None


def is_wap_push(short_message: bytes, esm_class: int) -> bool:
    """A part with 16-bit application ports in its UDH (bridge.core.wap). Its PDU is not kept,
    so it is never planned again; its UDH carries it through an SMSC of any form."""
    return bool(esm_class & UDHI) and any(iei == _IEI_PORTS16
                                          for iei, _, _ in _ies(short_message))


def with_reference(short_message: bytes, esm_class: int, tlvs: Tlvs,
                   reference: int) -> tuple[bytes, Tlvs]:
    """A stored part with another concatenation reference, and nothing else changed: the
    UDH element's reference (8- or 16-bit) or sar_msg_ref_num. A message sent again whole
    gets a new one, so a handset never joins its parts with the abandoned attempt's."""
    out = bytearray(short_message)
    if esm_class & UDHI:
        for iei, at, length in _ies(short_message):
            if iei == _IEI_CONCAT8 and length == 3:
                out[at] = reference & 0xFF
            elif iei == _IEI_CONCAT16 and length == 4:
                out[at:at + 2] = (reference & 0xFFFF).to_bytes(2, "big")
    new_tlvs = tuple((name, reference if name == "sar_msg_ref_num" else value)
                     for name, value in tlvs)
    return bytes(out), new_tlvs


def plan_fits(stored: ConcatMode | None, encoding: Encoding, route: RouteForm) -> bool:
    """Whether parts planned in the `stored` form and `encoding` can go on `route` as they
    are: the same form (a lone short_message part fits all) in an encoding it takes."""
    return route.takes(encoding) and (stored is None or stored is route.concat)


def plan_for_route(text: str, route: RouteForm, *, auto: tuple[Encoding, ...],
                   type_code: int | None = None, flash: bool = False,
                   encoding: Encoding | None = None, message_class: int | None = None,
                   url: str | None = None, max_parts: int = 10,
                   reference: int = 0) -> SegmentPlan:
    """`plan_message` for an SMSC of form `route`: its concatenation, and an encoding it
    takes. An encoding the request fixed (type code or coding) is kept when the SMSC takes
    it; otherwise the cheapest exact one among the `auto` candidates the SMSC takes (flash
    and class are kept). The reference is taken modulo the form's range."""
    wap = type_code == WAP_PUSH_TYPE
    fixed = encoding if encoding is not None else \
        resolve_type(type_code, flash).encoding if type_code is not None and not wap else None
    if fixed is not None and not route.takes(fixed):
        flash = resolve_type(type_code, flash).flash if type_code is not None else flash
        type_code, encoding = None, None
    candidates = tuple(e for e in auto if route.takes(e))
    if not candidates:
        raise BridgeError(ErrorName.INVALID_MESSAGE, "the SMSC takes none of the encodings")
    return plan_message(text, type_code=type_code, flash=flash, concat=route.concat,
                        max_parts=max_parts,
                        reference=reference % (reference_max(route.concat) + 1),
                        candidates=candidates, encoding=encoding, message_class=message_class,
                        url=url)
