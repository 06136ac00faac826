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
