"""The simulator's own text handling, written from 3GPP TS 23.038 and TS 23.040.

Independent of bridge.core and of smpplib on purpose: the simulator checks the bridge's encoders
with a second implementation, so a bug shared by both sides cannot pass a test unnoticed.

- GSM 7-bit default alphabet and its extension table (TS 23.038 §6.2.1 / §6.2.1.1), in the
  *unpacked* form SMPP uses (one septet per octet).
- Latin-1 (SMPP data_coding 0x03), UCS2 / UTF-16BE incl. surrogate pairs (data_coding 0x08).
- User Data Header (TS 23.040 §9.2.3.24): IE 0x00 (concatenation, 8-bit reference) and
  IE 0x08 (concatenation, 16-bit reference).
- The reverse encoders and splitters the simulator needs to send MO messages: GSM escape pairs
  and UTF-16 surrogate pairs are never split across parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

__all__ = [
    "GSM_DEFAULT", "GSM_EXTENSION", "ESC", "ConcatInfo", "Udh", "GsmEncodeError",
    "decode_gsm7", "encode_gsm7", "gsm7_length", "is_gsm7", "decode_latin1", "encode_latin1",
    "decode_ucs2", "encode_ucs2", "alphabet_of", "decode_text", "parse_udh", "split_udh",
    "concat_udh8", "concat_udh16", "split_gsm7", "split_ucs2", "split_octets",
]

ESC = 0x1B

# TS 23.038 §6.2.1, default alphabet, positions 0x00..0x7F. Position 0x1B is the escape to the
# extension table (shown here as a space: what a receiver that does not understand it displays).
GSM_DEFAULT: str = (
    "@£$¥èéùìòÇ\nØø\rÅå"     # 0x00-0x0F
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"    # 0x10-0x1F
    " !\"#¤%&'()*+,-./"      # 0x20-0x2F
    "0123456789:;<=>?"       # 0x30-0x3F
    "¡ABCDEFGHIJKLMNO"       # 0x40-0x4F
    "PQRSTUVWXYZÄÖÑÜ§"       # 0x50-0x5F
    "¿abcdefghijklmno"       # 0x60-0x6F
    "pqrstuvwxyzäöñüà"       # 0x70-0x7F
)
assert len(GSM_DEFAULT) == 128

# TS 23.038 §6.2.1.1, extension table (after 0x1B). 0x0A is the page break, shown as form feed.
GSM_EXTENSION: dict[int, str] = {
    0x0A: "\x0c", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\",
    0x3C: "[", 0x3D: "~", 0x3E: "]", 0x40: "|", 0x65: "€",
}

_DECODE_TABLE: dict[int, str] = {i: c for i, c in enumerate(GSM_DEFAULT) if i != ESC}
for _i in range(0x80, 0x100):
    _DECODE_TABLE[_i] = "\ufffd"  # not a septet: visible as a replacement character
_ENCODE_DEFAULT: dict[str, int] = {c: i for i, c in enumerate(GSM_DEFAULT) if i != ESC}
_ENCODE_EXTENSION: dict[str, int] = {c: i for i, c in GSM_EXTENSION.items()}


class GsmEncodeError(ValueError):
    """A character that neither GSM table holds."""


# ------------------------------------------------------------------ GSM 7-bit (unpacked)

def decode_gsm7(septets: bytes) -> str:
    """Unpacked septets → text. ESC + a code the extension table lacks shows the default-table
    character (TS 23.038 §6.2.1.1 note); a trailing ESC shows as a space."""
    if ESC not in septets:
        return septets.decode("latin-1").translate(_DECODE_TABLE)
    out: list[str] = []
    i, n = 0, len(septets)
    while i < n:
        b = septets[i]
        if b == ESC:
            if i + 1 >= n:
                out.append(" ")
                break
            nxt = septets[i + 1]
            ext = GSM_EXTENSION.get(nxt)
            if ext is not None:
                out.append(ext)
            elif nxt == ESC:
                out.append(" ")  # 1B 1B: reserved for a further extension table
            else:
                out.append(_DECODE_TABLE[nxt])
            i += 2
        else:
            out.append(_DECODE_TABLE[b])
            i += 1
    return "".join(out)


def encode_gsm7(text: str) -> bytes:
    """Text → unpacked septets (extension characters as 0x1B pairs)."""
    out = bytearray()
    for ch in text:
        code = _ENCODE_DEFAULT.get(ch)
        if code is not None:
            out.append(code)
            continue
        ext = _ENCODE_EXTENSION.get(ch)
        if ext is None:
            raise GsmEncodeError(f"{ch!r} (U+{ord(ch):04X}) is not in the GSM 03.38 tables")
        out += bytes((ESC, ext))
    return bytes(out)


def is_gsm7(text: str) -> bool:
    return all(ch in _ENCODE_DEFAULT or ch in _ENCODE_EXTENSION for ch in text)


def gsm7_length(text: str) -> int:
    """Septets needed (an extension character counts 2)."""
    return sum(2 if ch in _ENCODE_EXTENSION else 1 for ch in text)


# ------------------------------------------------------------------ Latin-1, UCS2

def decode_latin1(data: bytes) -> str:
    return data.decode("latin-1")


def encode_latin1(text: str) -> bytes:
    return text.encode("latin-1")


def decode_ucs2(data: bytes) -> str:
    """UTF-16BE; a lone surrogate (a pair split across parts) is kept as a lone surrogate so that
    reassembly still shows the error, an odd trailing octet becomes U+FFFD."""
    if len(data) % 2:
        return data[:-1].decode("utf-16-be", "surrogatepass") + "\ufffd"
    return data.decode("utf-16-be", "surrogatepass")


def encode_ucs2(text: str) -> bytes:
    return text.encode("utf-16-be")


Alphabet = Literal["gsm7", "ascii", "latin1", "ucs2", "binary"]


def alphabet_of(data_coding: int) -> Alphabet:
    """SMPP 3.4 §5.2.19 plus the TS 23.038 §4 coding groups carried in data_coding."""
    dc = data_coding
    if dc == 0x00:
        return "gsm7"
    if dc == 0x01:
        return "ascii"
    if dc == 0x03:
        return "latin1"
    if dc == 0x08:
        return "ucs2"
    if dc in (0x02, 0x04):
        return "binary"
    if dc < 0x10:
        return "binary"  # JIS, Cyrillic, Hebrew, pictogram, …: not handled as text here
    if dc < 0x40:  # general data coding group 00xx: bits 3..2 = alphabet
        if dc & 0x20:
            return "binary"  # compressed
        return ("gsm7", "binary", "ucs2", "binary")[(dc >> 2) & 0x03]
    if 0xC0 <= dc <= 0xDF:
        return "gsm7"  # message waiting, GSM alphabet
    if 0xE0 <= dc <= 0xEF:
        return "ucs2"  # message waiting, UCS2
    if dc >= 0xF0:
        return "binary" if dc & 0x04 else "gsm7"
    return "binary"


def decode_text(data: bytes, data_coding: int) -> str:
    """User data (UDH removed) → text. Binary is mapped octet for octet (Latin-1) so it stays
    lossless and comparable."""
    alphabet = alphabet_of(data_coding)
    if alphabet == "gsm7":
        return decode_gsm7(data)
    if alphabet == "ucs2":
        return decode_ucs2(data)
    if alphabet == "ascii":
        return data.decode("ascii", "replace")
    return data.decode("latin-1")


# ------------------------------------------------------------------ UDH (TS 23.040 §9.2.3.24)

@dataclass(frozen=True, slots=True)
class ConcatInfo:
    """One part of a concatenated message: reference, total parts, this part's number (1-based)
    and where the reference came from (8 / 16-bit UDH IE, or the SAR TLVs)."""
    ref: int
    total: int
    seq: int
    ref_bits: Literal[8, 16, "sar"]


@dataclass(frozen=True, slots=True)
class Udh:
    raw: bytes                            # the whole header, UDHL octet included
    elements: tuple[tuple[int, bytes], ...]
    concat: ConcatInfo | None


def parse_udh(data: bytes) -> tuple[Udh, bytes]:
    """Split user data that starts with a UDH into (header, rest). Raises ValueError when the
    header is malformed (UDHL beyond the data, an IE overrunning the header, a concatenation IE
    with a wrong length or part number 0 / above the total)."""
    if not data:
        raise ValueError("UDHI set but the user data is empty")
    udhl = data[0]
    if udhl + 1 > len(data):
        raise ValueError(f"UDHL {udhl} exceeds the {len(data) - 1} octets that follow")
    header = data[1:1 + udhl]
    elements: list[tuple[int, bytes]] = []
    concat: ConcatInfo | None = None
    i = 0
    while i < len(header):
        if i + 2 > len(header):
            raise ValueError("truncated information element header")
        iei, iedl = header[i], header[i + 1]
        value = header[i + 2:i + 2 + iedl]
        if len(value) != iedl:
            raise ValueError(f"IE 0x{iei:02X} length {iedl} overruns the UDH")
        elements.append((iei, value))
        if iei == 0x00:
            if iedl != 3:
                raise ValueError(f"IE 0x00 must be 3 octets, got {iedl}")
            concat = _concat(value[0], value[1], value[2], 8)
        elif iei == 0x08:
            if iedl != 4:
                raise ValueError(f"IE 0x08 must be 4 octets, got {iedl}")
            concat = _concat((value[0] << 8) | value[1], value[2], value[3], 16)
        i += 2 + iedl
    return Udh(bytes(data[:1 + udhl]), tuple(elements), concat), bytes(data[1 + udhl:])


def _concat(ref: int, total: int, seq: int, bits: Literal[8, 16]) -> ConcatInfo:
    if total == 0 or seq == 0 or seq > total:
        raise ValueError(f"concatenation part {seq} of {total} is not valid")
    return ConcatInfo(ref, total, seq, bits)


def split_udh(data: bytes, udhi: bool) -> tuple[Udh | None, bytes]:
    """(None, data) without UDHI, else parse_udh(data)."""
    if not udhi:
        return None, data
    return parse_udh(data)


def concat_udh8(ref: int, total: int, seq: int) -> bytes:
    return bytes((0x05, 0x00, 0x03, ref & 0xFF, total, seq))


def concat_udh16(ref: int, total: int, seq: int) -> bytes:
    return bytes((0x06, 0x08, 0x04, (ref >> 8) & 0xFF, ref & 0xFF, total, seq))


# ------------------------------------------------------------------ splitting (for MO)

def _split_chars(text: str, encode: Callable[[str], bytes], limit: int) -> list[bytes]:
    """Encoded chunks of at most `limit` octets, cut only between characters, so a GSM escape
    pair or a UTF-16 surrogate pair always stays within one part."""
    parts: list[bytes] = []
    current = bytearray()
    for ch in text:
        code = encode(ch)
        if len(current) + len(code) > limit:
            parts.append(bytes(current))
            current = bytearray()
        current += code
    if current or not parts:
        parts.append(bytes(current))
    return parts


def split_gsm7(text: str, per_part: int) -> list[bytes]:
    """Septet chunks of at most per_part; an escape pair always stays within one part."""
    return _split_chars(text, encode_gsm7, per_part)


def split_ucs2(text: str, per_part_octets: int) -> list[bytes]:
    """UTF-16BE chunks of at most per_part_octets; a surrogate pair always stays together."""
    return _split_chars(text, lambda ch: ch.encode("utf-16-be"), per_part_octets)


def split_octets(data: bytes, per_part: int) -> list[bytes]:
    if not data:
        return [b""]
    return [data[i:i + per_part] for i in range(0, len(data), per_part)]
