"""Message encodings: legacy type codes, the cheapest exact encoding, SMPP data_coding values.

The bridge never alters a text to make it fit an encoding: an encoding is a candidate only if it
represents the text exactly, and among those the one needing the fewest SMS parts wins (the
operator bills per part). The per-part limits live here, next to the encodings they measure, so
that choosing an encoding and segmenting agree on what a part holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from types import MappingProxyType
from typing import Mapping

from bridge.core.errors import BridgeError, ErrorName
from bridge.core.gsm import gsm7_decode, gsm7_try_encode, gsm7_units


class Encoding(str, Enum):
    GSM7 = "gsm7"
    LATIN1 = "latin1"
    UCS2 = "ucs2"
    #: 8-bit data (a client's binary message, a WAP Push): each character of the text is one
    #: octet (U+0000..U+00FF); never chosen automatically.
    BINARY = "binary"


#: Tie-break order of `choose_encoding`: GSM is the one every SMSC and handset supports.
PREFERENCE: tuple[Encoding, ...] = (Encoding.GSM7, Encoding.LATIN1, Encoding.UCS2,
                                    Encoding.BINARY)
_RANK = {enc: i for i, enc in enumerate(PREFERENCE)}

#: Octets per unit in the encoded (unpacked) form: a GSM septet, a Latin-1 octet, a UTF-16 unit.
UNIT_OCTETS: Mapping[Encoding, int] = MappingProxyType(
    {Encoding.GSM7: 1, Encoding.LATIN1: 1, Encoding.UCS2: 2, Encoding.BINARY: 1})
#: Units in a single-part message (140 octets of user data, GSM packs 160 septets in them).
SINGLE_LIMIT: Mapping[Encoding, int] = MappingProxyType(
    {Encoding.GSM7: 160, Encoding.LATIN1: 140, Encoding.UCS2: 70, Encoding.BINARY: 140})
#: Units per part after a 6-octet UDH with an 8-bit reference (also SAR, where the SMSC adds it).
MULTI_LIMIT_UDH8: Mapping[Encoding, int] = MappingProxyType(
    {Encoding.GSM7: 153, Encoding.LATIN1: 134, Encoding.UCS2: 67, Encoding.BINARY: 134})
#: Units per part after a 7-octet UDH with a 16-bit reference.
MULTI_LIMIT_UDH16: Mapping[Encoding, int] = MappingProxyType(
    {Encoding.GSM7: 152, Encoding.LATIN1: 133, Encoding.UCS2: 66, Encoding.BINARY: 133})


@dataclass(frozen=True)
class TextType:
    """What the client asked for: a fixed encoding, or None to let the bridge choose."""

    encoding: Encoding | None
    flash: bool


#: The legacy type code of a WAP Push (bridge.core.wap): 8-bit data, planned apart.
WAP_PUSH_TYPE = 4

# SPEC §6 legacy type codes -> (encoding, flash). 3 was never assigned.
_TYPE_CODES: Mapping[int, tuple[Encoding, bool]] = MappingProxyType({
    0: (Encoding.GSM7, False),
    1: (Encoding.GSM7, True),
    2: (Encoding.UCS2, False),
    WAP_PUSH_TYPE: (Encoding.BINARY, False),
    5: (Encoding.LATIN1, False),
    6: (Encoding.UCS2, True),
    7: (Encoding.LATIN1, True),
})


#: No type code: one (immutable) TextType per flash setting, not one per request.
_AUTOMATIC: Mapping[bool, TextType] = MappingProxyType(
    {False: TextType(None, False), True: TextType(None, True)})


def resolve_type(type_code: int | None, flash: bool) -> TextType:
    """Legacy `type` code plus the separate `flash` flag -> TextType.

    A flash type code (1, 6, 7) forces flash; `flash=True` makes any type flash, since a client
    that sets the flag means it whatever the code says. No code means automatic choice.
    """
    if type_code is None:
        return _AUTOMATIC[flash]
    entry = _TYPE_CODES.get(type_code)
    if entry is None:
        raise BridgeError(ErrorName.INVALID_TYPE,
                          f"unknown type {type_code}; use 0 (GSM), 1 (GSM flash), 2 (Unicode), "
                          "4 (WAP Push), 5 (Latin-1), 6 (Unicode flash), 7 (Latin-1 flash) "
                          "or omit it")
    encoding, type_flash = entry
    return TextType(encoding, type_flash or flash)


def try_encode(text: str, enc: Encoding) -> bytes | None:
    """The exact encoding of `text` in `enc`, or None: the chooser probes every candidate."""
    if enc is Encoding.GSM7:
        return gsm7_try_encode(text)
    try:
        return text.encode("utf-16-be" if enc is Encoding.UCS2 else "latin-1")
    except UnicodeEncodeError:
        return None


def encode_text(text: str, enc: Encoding) -> bytes:
    """`text` in `enc` (GSM unpacked septets, Latin-1 octets, UTF-16-BE so astral characters
    become surrogate pairs), or INVALID_MESSAGE naming the first character that does not fit."""
    data = try_encode(text, enc)
    if data is not None:
        return data
    if enc is Encoding.GSM7:
        pos = next(i for i, ch in enumerate(text) if gsm7_units(ch) is None)
    else:
        try:
            text.encode("utf-16-be" if enc is Encoding.UCS2 else "latin-1")
            raise AssertionError("try_encode refused an encodable text")  # pragma: no cover
        except UnicodeEncodeError as exc:
            pos = exc.start
    bad = text[pos]
    raise BridgeError(ErrorName.INVALID_MESSAGE,
                      f"text cannot be encoded in {enc.value}: {bad!r} (U+{ord(bad):04X}) "
                      f"at position {pos}")


def split_points(data: bytes, enc: Encoding, single: int, multi: int) -> list[int]:
    """End offsets (in octets of `data`) of each part, greedy.

    `single` and `multi` are unit limits for a lone part and for each part of a concatenated
    message. A cut is moved back one unit when it would separate a GSM escape from its code or a
    UTF-16 high surrogate from its low one. Greedy is optimal: items are 1 or 2 units and their
    order is fixed, so filling each part as far as possible never costs a later part.
    """
    size = UNIT_OCTETS[enc]
    n = len(data)
    if n <= single * size:
        return [n]
    step = multi * size
    ends: list[int] = []
    start = 0
    if enc is Encoding.GSM7:
        while n - start > step:
            end = start + step
            if data[end - 1] == 0x1B:  # 0x1B is only ever an escape lead in encoded text
                end -= 1
            ends.append(end)
            start = end
    elif enc is Encoding.UCS2:
        while n - start > step:
            end = start + step
            if 0xD8 <= data[end - 2] <= 0xDB:  # high surrogate: keep the pair together
                end -= 2
            ends.append(end)
            start = end
    else:
        ends.extend(range(step, n, step))
    ends.append(n)
    return ends


def multi_limits(udh16: bool) -> Mapping[Encoding, int]:
    """Units per part of a concatenated message for the UDH in use."""
    return MULTI_LIMIT_UDH16 if udh16 else MULTI_LIMIT_UDH8


def encode_best(text: str, candidates: tuple[Encoding, ...], *,
                udh16: bool = False) -> tuple[Encoding, bytes, list[int]]:
    """(encoding, encoded text, part end offsets) of the cheapest exact candidate.

    Raises INVALID_MESSAGE when no candidate represents the text; ValueError for no candidates.
    """
    if not candidates:
        raise ValueError("no candidate encodings")
    multi = multi_limits(udh16)
    best: tuple[Encoding, bytes, list[int]] | None = None
    for enc in _in_preference_order(candidates):
        data = try_encode(text, enc)
        if data is None:
            continue
        ends = split_points(data, enc, SINGLE_LIMIT[enc], multi[enc])
        if best is None or len(ends) < len(best[2]):
            best = (enc, data, ends)
            if len(ends) == 1:
                break  # nothing beats one part, and later candidates lose ties
    if best is None:
        if len(candidates) == 1:
            encode_text(text, candidates[0])  # raises with the offending character
        names = ", ".join(e.value for e in _in_preference_order(candidates))
        raise BridgeError(ErrorName.INVALID_MESSAGE, f"text cannot be encoded in any of {names}")
    return best


@lru_cache(maxsize=64)
def _in_preference_order(candidates: tuple[Encoding, ...]) -> tuple[Encoding, ...]:
    """Distinct candidates in PREFERENCE order; a config has one list, asked per request."""
    return tuple(sorted(set(candidates), key=_RANK.__getitem__))


def choose_encoding(text: str, candidates: tuple[Encoding, ...], *,
                    udh16: bool = False) -> Encoding:
    """The candidate representing `text` exactly in the fewest parts; ties go to GSM7, then
    LATIN1, then UCS2, whatever order the candidates come in."""
    return encode_best(text, candidates, udh16=udh16)[0]


#: TS 23.038 general data coding with a message class: the alphabet bits of each encoding.
_CLASS_ALPHABET: Mapping[Encoding, int] = MappingProxyType(
    {Encoding.GSM7: 0x10, Encoding.BINARY: 0x14, Encoding.UCS2: 0x18})
_PLAIN_DCS: Mapping[Encoding, int] = MappingProxyType(
    {Encoding.GSM7: 0x00, Encoding.LATIN1: 0x03, Encoding.BINARY: 0x04, Encoding.UCS2: 0x08})


def data_coding_for(enc: Encoding, flash: bool, message_class: int | None = None) -> int:
    """SMPP data_coding. A message class (0..3; flash is class 0) is TS 23.038 general data
    coding with a class: 0x10 + class for GSM, 0x14 + class for 8-bit, 0x18 + class for
    UCS2. No DCS combines SMPP's Latin-1 (0x03) with a class, so Latin-1 stays 0x03 (flash
    is then asked for with dest_addr_subunit=1; other classes it cannot have)."""
    if message_class is None and flash:
        message_class = 0
    if message_class is None or enc is Encoding.LATIN1:
        return _PLAIN_DCS[enc]
    if not 0 <= message_class <= 3:
        raise BridgeError(ErrorName.INVALID_TYPE, f"message class {message_class} is not 0..3")
    return _CLASS_ALPHABET[enc] | message_class



def encoding_of(data_coding: int) -> Encoding:
    """The encoding a data_coding made by `data_coding_for` carries (the inverse, for a plan
    read back from the store): 0x03 Latin-1, 0x08 UCS2, 0x04 8-bit, 0x00 GSM, and with a
    class (0x10..0x1F) the alphabet in bits 3..2."""
    if data_coding == 0x03:
        return Encoding.LATIN1
    if data_coding in (0x02, 0x04):
        return Encoding.BINARY
    if data_coding == 0x08:
        return Encoding.UCS2
    if 0x10 <= data_coding <= 0x3F:
        return (Encoding.GSM7, Encoding.BINARY, Encoding.UCS2, Encoding.GSM7)[
            (data_coding >> 2) & 0x03]
    return Encoding.GSM7


def class_of(data_coding: int) -> int | None:
    """The message class `data_coding_for` put in a data_coding (flash is 0), or None."""
    return data_coding & 0x03 if 0x10 <= data_coding <= 0x1F else None

# SMPP 3.4 §5.2.19 data_coding 0x00..0x0F: the alphabet for each value, as a Python codec
# ("gsm7" for our decoder). Values with no clear codec (JIS, pictograms, Kanji, KS C 5601)
# fall back to Latin-1, which at least keeps every octet.
_SMPP_CODECS: Mapping[int, str] = MappingProxyType({
    0x00: "gsm7",
    0x01: "ascii",  # IA5
    0x02: "latin-1",  # 8-bit binary
    0x03: "latin-1",
    0x04: "latin-1",  # 8-bit binary
    0x06: "iso8859-5",  # Cyrillic
    0x07: "iso8859-8",  # Latin/Hebrew
    0x08: "utf-16-be",
    0x0A: "iso2022_jp",
})


def dcs_codec(data_coding: int) -> str:
    """Python codec name ("gsm7" for unpacked GSM septets) for an SMPP data_coding value.

    0x00..0x0F follow SMPP's own table; above that the octet is a TS 23.038 §4 data coding
    scheme: groups 00xx/01xx name the alphabet in bits 3..2, 1100/1101 (message waiting) are
    GSM, 1110 is UCS2, 1111 is GSM or 8-bit by bit 2, and reserved values are read as GSM as
    TS 23.038 tells a receiver to. A compressed text (bit 5 in groups 00xx/01xx) raises
    ValueError: nobody implements TS 23.042 compression.
    """
    if not 0 <= data_coding <= 0xFF:
        raise ValueError(f"data_coding {data_coding} is not an octet")
    if data_coding <= 0x0F:
        return _SMPP_CODECS.get(data_coding, "latin-1")
    group = data_coding >> 4
    if group <= 0x7:  # general data coding, with or without automatic deletion
        if data_coding & 0x20:
            raise ValueError(f"data_coding 0x{data_coding:02X} is a compressed text")
        alphabet = (data_coding >> 2) & 0x03
        return ("gsm7", "latin-1", "utf-16-be", "gsm7")[alphabet]
    if group == 0xE:
        return "utf-16-be"
    if group == 0xF:
        return "latin-1" if data_coding & 0x04 else "gsm7"
    return "gsm7"  # 0xC/0xD message waiting groups, and the reserved 0x8..0xB groups


def decode_text(data: bytes, data_coding: int) -> str:
    """Text of an MO short message body (UDH already removed) with the given data_coding.

    Tolerant, because the handset and SMSC are not ours: GSM uses the receiver fallbacks of
    `gsm7_decode`, other codecs replace undecodable octets (an odd trailing UCS2 octet, a lone
    surrogate) with U+FFFD rather than dropping the message.
    """
    codec = dcs_codec(data_coding)
    if codec == "gsm7":
        return gsm7_decode(data)
    return data.decode(codec, errors="replace")
