"""GSM 03.38 default alphabet and extension table (3GPP TS 23.038 §6.2.1 and §6.2.1.1).

Written from the specification rather than borrowed from smpplib, whose table maps 0x5F and 0x60
wrongly ('§' and '¿' are right). SMPP with data_coding 0 carries GSM text *unpacked*, one septet
per octet, with extension characters as the pair 0x1B xx; `gsm7_encode`/`gsm7_decode` work on
that form. `gsm7_pack`/`gsm7_unpack` implement the 3GPP TS 23.040 on-air packing, which the
bridge only needs to account octets on the air and to test against published examples.

Every lookup structure is built once at import: encoding is on the submit hot path.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Mapping

ESC = 0x1B

# TS 23.038 §6.2.1, the default alphabet, by code point 0x00..0x7F. 0x1B is the escape to the
# extension table, not a character; it is kept here as a placeholder and excluded below.
_DEFAULT_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"          # 0x00-0x0F
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"          # 0x10-0x1F
    " !\"#¤%&'()*+,-./"            # 0x20-0x2F
    "0123456789:;<=>?"             # 0x30-0x3F
    "¡ABCDEFGHIJKLMNO"             # 0x40-0x4F
    "PQRSTUVWXYZÄÖÑÜ§"             # 0x50-0x5F
    "¿abcdefghijklmno"             # 0x60-0x6F
    "pqrstuvwxyzäöñüà"             # 0x70-0x7F
)
assert len(_DEFAULT_TABLE) == 128

# TS 23.038 §6.2.1.1, the extension table: the octet following 0x1B.
_EXTENSION_TABLE: Mapping[int, str] = MappingProxyType({
    0x0A: "\x0c",  # form feed (page break)
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
})

#: character -> septet, for the 127 characters of the default alphabet.
DEFAULT_ALPHABET: Mapping[str, int] = MappingProxyType(
    {ch: code for code, ch in enumerate(_DEFAULT_TABLE) if code != ESC})
#: character -> septet following 0x1B, for the 10 characters of the extension table.
EXTENSION: Mapping[str, int] = MappingProxyType({ch: code for code, ch in _EXTENSION_TABLE.items()})

# str.translate tables: text -> one chr() per septet (escape pairs as two), so encoding is a
# C-speed translate + latin-1 encode once the text is known to be representable.
_ENCODE_TRANSLATE: dict[int, str] = {ord(ch): chr(code) for ch, code in DEFAULT_ALPHABET.items()}
_ENCODE_TRANSLATE.update({ord(ch): "\x1b" + chr(code) for ch, code in EXTENSION.items()})

# Matches any character outside both tables; its absence proves the text is representable.
_NOT_GSM = re.compile(
    "[^" + "".join(re.escape(ch) for ch in (*DEFAULT_ALPHABET, *EXTENSION)) + "]")
_EXTENDED = re.compile("[" + "".join(re.escape(ch) for ch in EXTENSION) + "]")

# Decoding without escapes is a translate of the latin-1 view of the octets.
_DECODE_TRANSLATE: dict[int, str] = {code: ch for code, ch in enumerate(_DEFAULT_TABLE)}


def gsm7_units(ch: str) -> int | None:
    """Septets `ch` costs in GSM 03.38: 1 (default alphabet), 2 (extension, sent as 0x1B xx),
    or None when GSM cannot represent it."""
    if ch in DEFAULT_ALPHABET:
        return 1
    if ch in EXTENSION:
        return 2
    return None


def gsm7_representable(text: str) -> bool:
    """True when every character of `text` is in the default alphabet or the extension table."""
    return _NOT_GSM.search(text) is None


def gsm7_length(text: str) -> int | None:
    """Septets needed for `text` (extension characters count 2), None if not representable."""
    if _NOT_GSM.search(text) is not None:
        return None
    return len(text) + len(_EXTENDED.findall(text))


def gsm7_try_encode(text: str) -> bytes | None:
    """Like `gsm7_encode` but None instead of an exception: the encoding chooser probes
    encodings and an exception per refusal would cost more than the probe."""
    if _NOT_GSM.search(text) is not None:
        return None
    return text.translate(_ENCODE_TRANSLATE).encode("latin-1")


def gsm7_encode(text: str) -> bytes:
    """Unpacked septets (one per octet, extension characters as 0x1B xx), the form SMPP's
    data_coding 0 carries. Raises ValueError naming the first character GSM cannot represent."""
    bad = _NOT_GSM.search(text)
    if bad is not None:
        raise ValueError(f"{bad.group()!r} (U+{ord(bad.group()):04X}) at position {bad.start()} "
                         "is not in the GSM 03.38 alphabet")
    return text.translate(_ENCODE_TRANSLATE).encode("latin-1")


def gsm7_decode(data: bytes, *, strict: bool = False) -> str:
    """Text of unpacked septets.

    Tolerant by default because MO text comes from handsets and SMSCs we do not control; the
    fallbacks are those TS 23.038 prescribes for a receiving entity: an escape followed by a code
    the extension table does not define shows the default-alphabet character of that code,
    0x1B 0x1B (reserved for a further extension table) and a trailing lone 0x1B show as a space.
    Octets above 0x7F are not septets and become U+FFFD. With `strict=True` every one of those
    cases raises ValueError instead.
    """
    if ESC not in data and (not data or max(data) < 0x80):
        return data.decode("latin-1").translate(_DECODE_TRANSLATE)
    out: list[str] = []
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == ESC:
            if i + 1 >= n:
                if strict:
                    raise ValueError("lone escape 0x1B at the end of the septets")
                out.append(" ")
                break
            nxt = data[i + 1]
            ext = _EXTENSION_TABLE.get(nxt)
            if ext is not None:
                out.append(ext)
            elif strict:
                raise ValueError(f"escape sequence 1B {nxt:02X} at octet {i} is not defined")
            elif nxt == ESC or nxt >= 0x80:
                out.append(" " if nxt == ESC else "\ufffd")
            else:
                out.append(_DEFAULT_TABLE[nxt])
            i += 2
            continue
        if code >= 0x80:
            if strict:
                raise ValueError(f"octet {code:02X} at {i} is not a septet")
            out.append("\ufffd")
        else:
            out.append(_DEFAULT_TABLE[code])
        i += 1
    return "".join(out)


def gsm7_pack(septets: bytes, fill_bits: int = 0) -> bytes:
    """3GPP TS 23.040 §9.2.3.24 packing: septet i occupies bits fill_bits + 7*i onward, least
    significant bit first. `fill_bits` (0..6) are the zero bits that make a preceding UDH end on
    a septet boundary; they occupy the low bits of the first octet returned."""
    if not 0 <= fill_bits <= 6:
        raise ValueError("fill_bits must be 0..6")
    if not septets:
        return b""  # fill bits only exist to align following septets
    if max(septets) > 0x7F:
        raise ValueError("septets must be 0x00..0x7F")
    value = 0
    for i, septet in enumerate(septets):
        value |= septet << (7 * i)
    nbits = fill_bits + 7 * len(septets)
    return (value << fill_bits).to_bytes((nbits + 7) // 8, "little")


def gsm7_unpack(data: bytes, septets: int | None = None, fill_bits: int = 0) -> bytes:
    """Inverse of `gsm7_pack`. Without `septets` every whole septet is returned, so 7 packed
    septets come back as 8 with a trailing 0x00: the octet length alone cannot tell (TS 23.038
    §6.1.2.3.1 pads with CR for that reason); the SMS's own septet count (TP-UDL) can."""
    if not 0 <= fill_bits <= 6:
        raise ValueError("fill_bits must be 0..6")
    available = max(len(data) * 8 - fill_bits, 0) // 7
    count = available if septets is None else septets
    if count > available:
        raise ValueError(f"{len(data)} octets hold {available} septets, not {count}")
    value = int.from_bytes(data, "little") >> fill_bits
    return bytes((value >> (7 * i)) & 0x7F for i in range(count))


def gsm7_packed_octets(septets: int, udh_octets: int = 0) -> int:
    """Octets on the air for a UDH of `udh_octets` (including its length octet) followed by
    `septets` packed septets, with the fill bits that align the text on a septet boundary."""
    if not septets:
        return udh_octets
    udh_bits = udh_octets * 8
    fill = (7 - udh_bits % 7) % 7
    return (udh_bits + fill + septets * 7 + 7) // 8
